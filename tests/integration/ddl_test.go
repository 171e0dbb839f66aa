package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

const ddlSchema = `
CREATE SCHEMA app;
CREATE TABLE app.a (id int PRIMARY KEY, v text);
CREATE TABLE app.b (id int PRIMARY KEY, n int);
CREATE TABLE app.old_name (id int PRIMARY KEY, x text);
CREATE TABLE app.m (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE app.m_eu PARTITION OF app.m FOR VALUES IN ('eu');
CREATE TABLE app.dropme (id int PRIMARY KEY);
INSERT INTO app.a SELECT i, 'v' || i FROM generate_series(1, 20) i;
INSERT INTO app.b SELECT i, i FROM generate_series(1, 20) i;
INSERT INTO app.old_name SELECT i, 'x' FROM generate_series(1, 5) i;
INSERT INTO app.m SELECT i, 'eu', i FROM generate_series(1, 5) i;
INSERT INTO app.dropme SELECT generate_series(1, 3);
CREATE SCHEMA crm;
CREATE TABLE crm.people (id int PRIMARY KEY, nm text);
INSERT INTO crm.people SELECT i, 'p' || i FROM generate_series(1, 5) i;
`

// ddlSteps are the schema changes of TestSchemaChangesWhileStreaming, each with the writes that
// follow it: the DTS list, a new table and a new partition, renames (the destination follows a
// table without a mapped name; a mapped table and column keep theirs), a move to another selected
// schema, DROP and re-CREATE, and changes inside one transaction with writes between them.
var ddlSteps = [][]string{
	{`ALTER TABLE app.a ADD COLUMN c int`, `INSERT INTO app.a VALUES (100, 'new', 5)`, `UPDATE app.a SET c = id WHERE id <= 5`},
	{`ALTER TABLE app.a ADD COLUMN d text DEFAULT 'dflt'`, `INSERT INTO app.a (id, v) VALUES (101, 'defaulted')`, `UPDATE app.a SET d = 'set' WHERE id = 1`},
	{`ALTER TABLE app.a ALTER COLUMN c TYPE bigint`, `INSERT INTO app.a (id, c) VALUES (102, 1000000000000)`},
	{`ALTER TABLE app.a DROP COLUMN v`, `INSERT INTO app.a (id, c) VALUES (103, 3)`, `UPDATE app.a SET c = c + 1 WHERE id = 2`},
	{`ALTER TABLE app.b ADD CONSTRAINT b_n_positive CHECK (n > 0)`, `INSERT INTO app.b VALUES (100, 100)`},
	{`ALTER TABLE app.b ADD CONSTRAINT b_n_unique UNIQUE (n)`, `INSERT INTO app.b VALUES (101, 101)`},
	{`ALTER TABLE app.a ALTER COLUMN d DROP DEFAULT`, `INSERT INTO app.a (id) VALUES (104)`},
	{`ALTER TABLE app.old_name RENAME TO new_name`, `INSERT INTO app.new_name VALUES (100, 'after rename')`, `UPDATE app.new_name SET x = 'u' WHERE id = 1`},
	{`ALTER TABLE app.a RENAME COLUMN c TO c2`, `INSERT INTO app.a (id, c2) VALUES (105, 5)`},
	{`TRUNCATE app.b`, `INSERT INTO app.b VALUES (1, 1)`},
	{`CREATE INDEX a_c2_idx ON app.a (c2)`, `CREATE INDEX CONCURRENTLY b_n_idx ON app.b (n DESC)`, `DROP INDEX app.a_c2_idx`},
	{`CREATE TABLE app.fresh (id serial PRIMARY KEY, note text NOT NULL)`, `INSERT INTO app.fresh (note) VALUES ('first'), ('second')`},
	{`CREATE TABLE app.m_us PARTITION OF app.m FOR VALUES IN ('us')`, `INSERT INTO app.m VALUES (100, 'us', 1), (101, 'eu', 2)`},
	{`DROP TABLE app.dropme`, `CREATE TABLE app.dropme (id int PRIMARY KEY, extra text)`, `INSERT INTO app.dropme VALUES (1, 'again')`},
	{`BEGIN; ALTER TABLE app.b ADD COLUMN tmp int; INSERT INTO app.b (id, n, tmp) VALUES (200, 200, 1); ALTER TABLE app.b DROP COLUMN tmp; INSERT INTO app.b VALUES (201, 201); COMMIT`},
	{`CREATE SEQUENCE app.counter START 7`, `ALTER TABLE crm.people RENAME TO persons`, `ALTER TABLE crm.persons RENAME COLUMN nm TO display_name`,
		`INSERT INTO crm.persons VALUES (100, 'renamed twice')`},
	{`CREATE TABLE app.t_after (id int PRIMARY KEY)`, `BEGIN; INSERT INTO app.t_after VALUES (1); ALTER TABLE app.t_after ADD COLUMN later text DEFAULT 'l'; INSERT INTO app.t_after VALUES (2, 'two'); COMMIT`},
	{`ALTER TABLE app.t_after SET SCHEMA crm`, `INSERT INTO crm.t_after VALUES (3, 'three')`, `UPDATE crm.t_after SET later = 'moved' WHERE id = 1`},
}

// TestSchemaChangesWhileStreaming runs each schema change of ddlSteps on the source of a
// streaming task, with writes after it, and compares every table row by row and the
// destination's columns with the source's (after mapping); into PostgreSQL and IvorySQL.
func TestSchemaChangesWhileStreaming(t *testing.T) {
	parallel(t)
	eachDestination(t, func(t *testing.T) { testSchemaChangesWhileStreaming(t, 0) })
}

// TestSchemaChangesWhileStreamingInLanes is TestSchemaChangesWhileStreaming with parallel apply:
// each schema change is a barrier, and the other lanes go on with the changed tables.
func TestSchemaChangesWhileStreamingInLanes(t *testing.T) {
	parallel(t)
	eachDestination(t, func(t *testing.T) { testSchemaChangesWhileStreaming(t, 3) })
}

func testSchemaChangesWhileStreaming(t *testing.T, lanes int) {
	ctx := context.Background()
	srcPG, dstPG, src, dst := clusterPair(t, true, "ddl", ddlSchema)
	c := startWorker(t, t.TempDir())
	s := spec.Spec{
		Name: "it-ddl", Source: srcPG.Endpoint("ddl"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{
			{Schema: "app", To: "mart"},
			{Schema: "crm", Tables: []spec.Table{{Name: "people", To: "contacts", Columns: map[string]string{"nm": "full_name"}}}},
		},
		Apply: spec.Apply{Lanes: lanes},
	}
	run := startTask(t, c, s, nil)
	st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	require.Empty(t, st.LastError)
	ddlChecks := func() []tableCheck {
		return []tableCheck{
			tableOf("app", "a", "mart", "a", "id", "c2", "d"),
			tableOf("app", "b", "mart", "b", "id", "n"),
			tableOf("app", "new_name", "mart", "new_name", "id", "x"),
			tableOf("app", "m", "mart", "m", "id", "region", "v"),
			tableOf("app", "fresh", "mart", "fresh", "id", "note"),
			tableOf("app", "dropme", "mart", "dropme", "id", "extra"),
			tableOf("crm", "t_after", "crm", "t_after", "id", "later"),
			{src: spec.QName{Schema: "crm", Name: "persons"}, dst: spec.QName{Schema: "crm", Name: "contacts"},
				srcCols: []string{"id", "display_name"}, dstCols: []string{"id", "full_name"}, srcKey: []string{"id"}, dstKey: []string{"id"}},
		}
	}
	// After each step: every table that exists on the source, its rows and its columns.
	for i, step := range ddlSteps {
		for _, q := range step {
			_, err := src.Exec(ctx, q)
			require.NoError(t, err, "step %d: %s", i, q)
		}
		testharness.Eventually(t, time.Minute, func() error {
			if st := status(t, c, run.GetID()); st.LastError != "" {
				return fmt.Errorf("step %d: the task reports: %s", i, st.LastError)
			}
			return compareExisting(t, src, dst)
		})
	}
	require.NoError(t, compareAll(ctx, src, dst, ddlChecks()))

	// The destination's columns are the source's, after mapping.
	for _, tc := range ddlChecks() {
		want := columnTypes(t, src, tc.src)
		if tc.src.Schema == "crm" {
			want = strings.Replace(want, "display_name ", "full_name ", 1)
		}
		require.Equal(t, want, columnTypes(t, dst, tc.dst), "columns of %s", tc.dst)
	}
	var n, old int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE conrelid = 'mart.b'::regclass AND conname IN ('b_n_positive', 'b_n_unique')`).Scan(&n))
	require.Equal(t, 2, n, "constraints added")
	indexes := indexNames(t, dst, "mart")
	require.Contains(t, indexes, "b_n_idx", "CREATE INDEX CONCURRENTLY")
	require.NotContains(t, indexes, "a_c2_idx", "DROP INDEX")
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname = 'counter' AND relkind = 'S' AND relnamespace = 'mart'::regnamespace`).Scan(&n))
	require.Equal(t, 1, n, "CREATE SEQUENCE in a schema selected whole")
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FILTER (WHERE relname = 'new_name'), count(*) FILTER (WHERE relname = 'old_name') FROM pg_class WHERE relnamespace = 'mart'::regnamespace`).Scan(&n, &old))
	require.Equal(t, []int{1, 0}, []int{n, old}, "the destination follows a rename of a table without a mapped name")
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname = 'contacts' AND relnamespace = 'crm'::regnamespace`).Scan(&n))
	require.Equal(t, 1, n, "a table mapped to a name of its own keeps it")

	// The status hears of the last change with the apply's next progress report (at most one a
	// second), after the rows it compared.
	testharness.Eventually(t, 30*time.Second, func() error {
		st = status(t, c, run.GetID())
		if st.SchemaChanges.Applied < int64(len(ddlSteps)) || !strings.Contains(st.SchemaChanges.Last, "t_after") {
			return fmt.Errorf("schema changes in status: %+v", st.SchemaChanges)
		}
		return nil
	})
	// The task's table list follows: created tables join, renamed and moved ones follow (or keep
	// their mapped name).
	testharness.Eventually(t, 30*time.Second, func() error {
		st := status(t, c, run.GetID())
		want := map[string]string{"app.fresh": "mart.fresh", "app.m_us": "mart.m_us", "app.new_name": "mart.new_name",
			"crm.t_after": "crm.t_after", "crm.persons": "crm.contacts", "app.dropme": "mart.dropme"}
		for _, ts := range st.Tables {
			if d, ok := want[ts.Source]; ok && d == ts.Destination {
				delete(want, ts.Source)
			}
		}
		if len(want) > 0 {
			return fmt.Errorf("status tables lack %v: %+v", want, st.Tables)
		}
		return nil
	})
	require.Equal(t, api.NoteCreatedBySchemaChange, findTable(status(t, c, run.GetID()), "app.fresh").Note)
	// Verification compares the tables under their new names and shapes.
	rep := verifyTask(t, c, run.GetID())
	require.True(t, rep.Equal, "%+v", rep.Tables)
	require.Len(t, rep.Tables, len(ddlChecks())+2, "every table, with the partitions m_eu and the new m_us")

	// Release removes the capture triggers with the slot.
	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalRelease, nil))
	require.NoError(t, run.Get(ctx, nil))
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'skein%'`).Scan(&n))
	require.Zero(t, n, "capture triggers removed")
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'skein'`).Scan(&n))
	require.Zero(t, n, "the source's skein schema (the capture function's) removed with the last task")
}

// ddlDestination maps the source tables of TestSchemaChangesWhileStreaming to the destination:
// app is mapped to mart (app.old_name follows its rename to new_name), crm.people (later
// crm.persons) is crm.contacts with its column nm (later display_name) as full_name, and a table
// moved to crm is there under its name.
func ddlDestination(table spec.QName) (spec.QName, map[string]string) {
	switch {
	case table.Schema == "crm" && (table.Name == "people" || table.Name == "persons"):
		return spec.QName{Schema: "crm", Name: "contacts"}, map[string]string{"nm": "full_name", "display_name": "full_name"}
	case table.Schema == "crm":
		return table, nil
	}
	return spec.QName{Schema: "mart", Name: table.Name}, nil
}

// compareExisting compares every table of app and crm that exists on the source now with its
// destination table: columns (names after mapping, types, NOT NULL, defaults) and rows.
func compareExisting(t *testing.T, src, dst *pgx.Conn) error {
	ctx := context.Background()
	rows, err := src.Query(ctx, `SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('app', 'crm') AND c.relkind IN ('r', 'p') ORDER BY 1, 2`)
	if err != nil {
		return err
	}
	var tables []spec.QName
	for rows.Next() {
		var q spec.QName
		if err := rows.Scan(&q.Schema, &q.Name); err != nil {
			return err
		}
		tables = append(tables, q)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, table := range tables {
		dest, renames := ddlDestination(table)
		want, got := columnTypes(t, src, table), columnTypes(t, dst, dest)
		for from, to := range renames {
			want = strings.Replace(want, from+" ", to+" ", 1)
		}
		if want != got {
			return fmt.Errorf("columns of %s:\n source: %s\n   dest: %s", dest, want, got)
		}
		var srcCols, dstCols []string
		for _, c := range strings.Split(columnTypes(t, src, table), ", ") {
			name := strings.Fields(c)[0]
			srcCols = append(srcCols, name)
			if to, ok := renames[name]; ok {
				name = to
			}
			dstCols = append(dstCols, name)
		}
		if err := compareAll(ctx, src, dst, []tableCheck{{src: table, dst: dest, srcCols: srcCols, dstCols: dstCols,
			srcKey: []string{"id"}, dstKey: []string{"id"}}}); err != nil {
			return err
		}
	}
	return nil
}

// tableOf is a tableCheck of a table whose columns keep their names.
func tableOf(srcSchema, srcName, dstSchema, dstName, key string, cols ...string) tableCheck {
	return tableCheck{src: spec.QName{Schema: srcSchema, Name: srcName}, dst: spec.QName{Schema: dstSchema, Name: dstName},
		srcCols: append([]string{key}, cols...), srcKey: []string{key}}
}

// columnTypes lists a table's columns as "name type not-null default", in order.
func columnTypes(t *testing.T, conn *pgx.Conn, table spec.QName) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) ||
  CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || COALESCE(' default ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, table.Quoted())
	require.NoError(t, err)
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	out := strings.Join(cols, ", ")
	// Sequence defaults name the (mapped) schema.
	return strings.NewReplacer("'mart.", "'", "'app.", "'").Replace(out)
}

func indexNames(t *testing.T, conn *pgx.Conn, schema string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1`, schema)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// TestSchemaChangesOfTablesWithoutDDL: a table whose operations leave out ddl keeps its
// destination shape: a column rename is followed by the mapping (its rows keep arriving), the
// change counts as skipped; a view created in the schema is reported as not replicated; a column
// added on the source whose values the destination cannot hold stops the task naming it.
func TestSchemaChangesOfTablesWithoutDDL(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := clusterPair(t, true, "ddl", `
CREATE SCHEMA crm;
CREATE TABLE crm.fixed (id int PRIMARY KEY, label text);
INSERT INTO crm.fixed VALUES (1, 'one');`)
	c := startWorker(t, t.TempDir())
	s := spec.Spec{
		Name: "it-noddl", Source: srcPG.Endpoint("ddl"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "crm", Tables: []spec.Table{{Name: "fixed", Operations: []string{"insert", "update", "delete", "truncate"}}}}},
	}
	run := startTask(t, c, s, nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	testharness.Exec(t, src, `ALTER TABLE crm.fixed RENAME COLUMN label TO title`)
	testharness.Exec(t, src, `INSERT INTO crm.fixed VALUES (2, 'two')`)
	testharness.Exec(t, src, `CREATE VIEW crm.fixed_view AS SELECT id FROM crm.fixed`)
	check := tableCheck{src: spec.QName{Schema: "crm", Name: "fixed"}, dst: spec.QName{Schema: "crm", Name: "fixed"},
		srcCols: []string{"id", "title"}, dstCols: []string{"id", "label"}, srcKey: []string{"id"}, dstKey: []string{"id"}}
	testharness.Eventually(t, time.Minute, func() error {
		if err := compareAll(ctx, src, dst, []tableCheck{check}); err != nil {
			return err
		}
		st := status(t, c, run.GetID())
		if st.SchemaChanges.Skipped != 1 || st.SchemaChanges.NotReplicated != 1 {
			return fmt.Errorf("schema changes in status: %+v", st.SchemaChanges)
		}
		return nil
	})
	st := status(t, c, run.GetID())
	require.Contains(t, st.SchemaChanges.LastNotReplicated, "crm.fixed_view")
	require.Zero(t, st.SchemaChanges.Applied)

	testharness.Exec(t, src, `ALTER TABLE crm.fixed ADD COLUMN extra int`)
	testharness.Exec(t, src, `INSERT INTO crm.fixed VALUES (3, 'three', 3)`)
	testharness.Eventually(t, 2*time.Minute, func() error {
		st := status(t, c, run.GetID())
		if !strings.Contains(st.LastError, `"extra"`) {
			return fmt.Errorf("the task does not name the column yet: %q", st.LastError)
		}
		return nil
	})
}

// TestWorkerKilledAroundSchemaChanges kills the worker process while columns are added and
// dropped between writes: the new worker resumes from the LSN committed with the data and the
// recorded schema, and the destination ends with the source's rows and columns.
func TestWorkerKilledAroundSchemaChanges(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	p := startProcessTask(t, "it-kill-ddl", `CREATE TABLE shop.evolving (id int PRIMARY KEY, v int)`, "evolving", nil)
	waitPhase(t, p.c, p.run.GetID(), api.PhaseIncremental, 3*time.Minute)
	stop := startWriter(t, p.srcPG, 20*time.Millisecond, func(i int) []string {
		stmts := []string{
			fmt.Sprintf(`ALTER TABLE shop.evolving ADD COLUMN c%d int DEFAULT %d`, i, i),
			fmt.Sprintf(`INSERT INTO shop.evolving (id, v, c%d) VALUES (%d, %d, %d)`, i, i, i, -i),
			fmt.Sprintf(`UPDATE shop.evolving SET v = v + 1 WHERE id = %d`, i/2),
		}
		if i >= 3 {
			stmts = append(stmts, fmt.Sprintf(`ALTER TABLE shop.evolving DROP COLUMN c%d`, i-3))
		}
		return stmts
	})
	testharness.Eventually(t, time.Minute, func() error {
		if st := status(t, p.c, p.run.GetID()); st.SchemaChanges.Applied < 10 {
			return fmt.Errorf("%d schema changes applied so far", st.SchemaChanges.Applied)
		}
		return nil
	})
	p.first.kill(t)
	time.Sleep(time.Second)
	p.another(t)
	time.Sleep(2 * time.Second)
	rounds := stop()
	require.Greater(t, rounds, 10)
	table := spec.QName{Schema: "shop", Name: "evolving"}
	dest := spec.QName{Schema: "mart", Name: "evolving"}
	testharness.Eventually(t, 3*time.Minute, func() error {
		want, got := columnTypes(t, p.src, table), columnTypes(t, p.dst, dest)
		if want != got {
			return fmt.Errorf("columns differ:\n source: %s\n   dest: %s", want, got)
		}
		cols := strings.Split(strings.NewReplacer(" integer", "", " default", "").Replace(want), ", ")
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = strings.Fields(c)[0]
		}
		return compareAll(ctx, p.src, p.dst, []tableCheck{{src: table, dst: dest, srcCols: names, srcKey: []string{"id"}}})
	})
}
