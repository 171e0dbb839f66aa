package ddlcapture_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestCaptureWritesEvents: the capture function writes one transactional message per DDL
// command, in the WAL where the command commits, with the table's state after it; a table
// created in a schema selected whole joins the publication at once; a session that turns capture
// off writes nothing; Remove leaves nothing behind.
func TestCaptureWritesEvents(t *testing.T) {
	ctx := context.Background()
	conn := logicalServer(t)
	exec := func(stmts ...string) {
		t.Helper()
		for _, q := range stmts {
			_, err := conn.Exec(ctx, q)
			require.NoError(t, err, q)
		}
	}
	// Commits flush the WAL, so that the slot reads them at once (the test clusters commit asynchronously).
	exec(`SET synchronous_commit = on`)
	exec(`CREATE SCHEMA app`, `CREATE TABLE app.t (id int PRIMARY KEY, a text)`, `CREATE PUBLICATION skein_x FOR TABLE app.t`,
		`SELECT pg_create_logical_replication_slot('probe', 'test_decoding')`)
	sel := ddlcapture.Selection{Publication: "skein_x", Schemas: []string{"app"}, Excluded: map[string][]string{"app": {"skip_me"}}}
	require.NoError(t, ddlcapture.Install(ctx, conn, "skein_x", sel))
	require.NoError(t, ddlcapture.Install(ctx, conn, "skein_x", sel), "installing again replaces the function")

	exec(`ALTER TABLE app.t ADD COLUMN b numeric(10,2) DEFAULT 1.5 NOT NULL, ALTER COLUMN a SET DEFAULT 'x'`,
		`ALTER TABLE app.t RENAME COLUMN a TO a2`,
		`CREATE TABLE app.fresh (id serial PRIMARY KEY, v text)`,
		`CREATE TABLE app.skip_me (id int)`,
		`CREATE INDEX t_b ON app.t (b)`,
		`DROP TABLE app.skip_me`,
		`SET skein.ddl_capture = off`, `ALTER TABLE app.t ADD COLUMN quiet int`, `RESET skein.ddl_capture`)
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_get_changes('probe', NULL, NULL) WHERE data LIKE 'message:%'`)
	require.NoError(t, err)
	msgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	var events []ddlcapture.Event
	for _, m := range msgs {
		require.Contains(t, m, "transactional: 1 prefix: "+ddlcapture.Prefix("skein_x"))
		ev, err := ddlcapture.ParseEvent([]byte(m[strings.Index(m, "content:")+len("content:"):]))
		require.NoError(t, err, m)
		events = append(events, ev)
	}
	var tags []string
	for _, ev := range events {
		tags = append(tags, ev.Tag)
	}
	require.Equal(t, []string{"ALTER TABLE", "ALTER TABLE", "CREATE TABLE", "CREATE TABLE", "CREATE INDEX", "DROP TABLE"}, tags)

	first := events[0].Tables[0]
	require.Equal(t, spec.QName{Schema: "app", Name: "t"}, first.QName())
	require.Equal(t, ddlcapture.Column{Num: 3, Name: "b", Type: "numeric(10,2)", NotNull: true, Default: "1.5"}, *first.Column(3))
	require.Equal(t, "'x'::text", first.Column(2).Default)
	require.Contains(t, events[0].Query, "ADD COLUMN b")
	require.Equal(t, "a2", events[1].Tables[0].Column(2).Name, "a rename keeps the attnum")
	fresh := events[2].Tables[0]
	require.Equal(t, "fresh", fresh.Name)
	require.Equal(t, "nextval('app.fresh_id_seq'::regclass)", fresh.Column(1).Default, "names qualified")
	require.Equal(t, []ddlcapture.Constraint{{Name: "fresh_pkey", Kind: "p", Def: "PRIMARY KEY (id)"}}, fresh.Constraints)
	require.Len(t, events[4].Indexes, 1)
	require.Equal(t, "t_b", events[4].Indexes[0].Name)
	require.Contains(t, events[4].Indexes[0].Def, "CREATE INDEX t_b ON app.t USING btree (b)")
	require.Equal(t, "skip_me", events[5].Dropped[0].Name)

	rows, err = conn.Query(ctx, `SELECT tablename::text FROM pg_publication_tables WHERE pubname = 'skein_x' ORDER BY 1`)
	require.NoError(t, err)
	published, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"fresh", "t"}, published, "a table created in a whole schema joins the publication; an excluded one does not")

	// A capture that fails (here: its publication is gone) never fails the user's DDL: the event
	// says what went wrong instead, for the stream to stop on.
	exec(`DROP PUBLICATION skein_x`, `CREATE TABLE app.after_drop (id int)`)
	rows, err = conn.Query(ctx, `SELECT data FROM pg_logical_slot_get_changes('probe', NULL, NULL) WHERE data LIKE 'message:%'`)
	require.NoError(t, err)
	msgs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	ev, err := ddlcapture.ParseEvent([]byte(msgs[0][strings.Index(msgs[0], "content:")+len("content:"):]))
	require.NoError(t, err)
	require.Equal(t, "CREATE TABLE", ev.Tag)
	require.Contains(t, ev.CaptureError, "skein_x")

	installed, err := ddlcapture.IsInstalled(ctx, conn, "skein_x")
	require.NoError(t, err)
	require.True(t, installed)
	require.NoError(t, ddlcapture.Remove(ctx, conn, "skein_x"))
	installed, err = ddlcapture.IsInstalled(ctx, conn, "skein_x")
	require.NoError(t, err)
	require.False(t, installed)

	// The same shape, read from Go (inside a task's snapshot, at schema sync).
	tx, err := catalog.BeginRead(ctx, conn, "")
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	var oid uint32
	require.NoError(t, tx.QueryRow(ctx, `SELECT 'app.t'::regclass::oid`).Scan(&oid))
	now, err := ddlcapture.LoadTable(ctx, tx, oid)
	require.NoError(t, err)
	require.Equal(t, "quiet", now.Column(4).Name)
	require.Equal(t, first.Column(3), now.Column(3))

	// Many at once: the same states, by OID, written for the server's version or not; an OID
	// that is no table is left out.
	var freshOID uint32
	var version int
	require.NoError(t, tx.QueryRow(ctx, `SELECT 'app.fresh'::regclass::oid, current_setting('server_version_num')::int`).Scan(&freshOID, &version))
	freshNow, err := ddlcapture.LoadTable(ctx, tx, freshOID)
	require.NoError(t, err)
	for _, v := range []int{0, version} {
		many, err := ddlcapture.LoadTables(ctx, tx, []uint32{oid, freshOID, 1}, v)
		require.NoError(t, err)
		require.Equal(t, map[uint32]*ddlcapture.Table{oid: now, freshOID: freshNow}, many)
	}
}

// TestRemoveLeavesTheSourceAsFound: the source schema "skein" that Install creates stays while
// any task's capture uses it and goes with the last one's Remove; a "skein" schema that was
// there before Skein (with an object of the user's, or empty) is left in place.
func TestRemoveLeavesTheSourceAsFound(t *testing.T) {
	ctx := context.Background()
	conn := logicalServer(t)
	schemaExists := func() bool {
		var ok bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'skein')`).Scan(&ok))
		return ok
	}
	sel := ddlcapture.Selection{Publication: "p", Schemas: []string{"public"}}
	require.NoError(t, ddlcapture.Install(ctx, conn, "skein_a", sel))
	require.NoError(t, ddlcapture.Install(ctx, conn, "skein_b", sel))
	require.NoError(t, ddlcapture.Remove(ctx, conn, "skein_a"))
	require.True(t, schemaExists(), "task b's capture still lives there")
	require.NoError(t, ddlcapture.Remove(ctx, conn, "skein_b"))
	require.False(t, schemaExists(), "the last release removes the schema Skein created")
	require.NoError(t, ddlcapture.Remove(ctx, conn, "skein_b"), "removing again is a no-op")

	for _, before := range []string{`CREATE SCHEMA skein`, `CREATE SCHEMA skein; CREATE TABLE skein.mine (id int)`} {
		_, err := conn.Exec(ctx, before)
		require.NoError(t, err)
		require.NoError(t, ddlcapture.Install(ctx, conn, "skein_a", sel))
		require.NoError(t, ddlcapture.Remove(ctx, conn, "skein_a"))
		require.True(t, schemaExists(), "a schema that was there before stays: %s", before)
		_, err = conn.Exec(ctx, `DROP SCHEMA skein CASCADE`)
		require.NoError(t, err)
	}
}

// logicalServer starts a PostgreSQL server with wal_level = logical and connects to it (the test
// is skipped with -short).
func logicalServer(t *testing.T) *pgx.Conn {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a PostgreSQL server")
	}
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{Logical: true})
	conn, err := pg.Connect(ctx, "postgres")
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}
