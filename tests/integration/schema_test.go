package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap/zaptest"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// appSchema has at least one object of every kind schema sync covers.
const appSchema = `
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'the application';
CREATE EXTENSION citext WITH SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.posint AS int CONSTRAINT posint_check CHECK (VALUE > 0);
CREATE TYPE app.pair AS (a int, b text);
CREATE TYPE app.numr AS RANGE (subtype = numeric);
CREATE SEQUENCE app.ticket_seq START 100 INCREMENT 5;
SELECT nextval('app.ticket_seq'), nextval('app.ticket_seq');
CREATE FUNCTION app.add_one(i int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT i + 1 $$;
COMMENT ON FUNCTION app.add_one(int) IS 'adds one';
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated := now(); RETURN NEW; END $$;
CREATE FUNCTION app.int_max(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT greatest(a, b) $$;
CREATE AGGREGATE app.my_max(int) (SFUNC = app.int_max, STYPE = int);
CREATE FUNCTION app.approx_eq(a numeric, b numeric) RETURNS bool LANGUAGE sql IMMUTABLE AS $$ SELECT abs(a - b) < 0.01 $$;
CREATE OPERATOR app.~= (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = app.approx_eq, COMMUTATOR = OPERATOR(app.~=));
CREATE TABLE app.items (
  id int PRIMARY KEY,
  name app.citext NOT NULL,
  qty app.posint,
  price numeric(10,2) CONSTRAINT price_ok CHECK (price >= 0),
  mood app.mood DEFAULT 'ok',
  tags text[],
  dims app.pair,
  band app.numr,
  updated timestamptz,
  code int DEFAULT app.add_one(1),
  total numeric GENERATED ALWAYS AS (price * 2) STORED
);
COMMENT ON TABLE app.items IS 'things we sell';
COMMENT ON COLUMN app.items.name IS 'display name';
CREATE INDEX items_expensive ON app.items (price DESC) WHERE price > 100;
CREATE INDEX items_lower ON app.items (lower(name::text));
CREATE TABLE app.bookings (
  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  item_id int REFERENCES app.items (id) ON DELETE CASCADE,
  during tsrange,
  CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)
);
CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v jsonb);
CREATE TABLE app.events (id bigint, at date NOT NULL, kind text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY RANGE (at);
CREATE TABLE app.events_2024_a PARTITION OF app.events_2024 FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE app.events_2024_other PARTITION OF app.events_2024 DEFAULT;
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_kind ON app.events (kind);
INSERT INTO app.events SELECT i, DATE '2024-01-01' + (i % 700), (ARRAY['a', 'b'])[1 + i % 2] FROM generate_series(1, 1000) i;
-- Foreign keys in a cycle, to itself, and to a partitioned table.
CREATE TABLE app.teams (id int PRIMARY KEY, lead_id int, parent_id int REFERENCES app.teams (id));
CREATE TABLE app.members (id int PRIMARY KEY, team_id int NOT NULL REFERENCES app.teams (id));
ALTER TABLE app.teams ADD CONSTRAINT teams_lead FOREIGN KEY (lead_id) REFERENCES app.members (id) DEFERRABLE INITIALLY DEFERRED;
INSERT INTO app.teams SELECT i, NULL, NULLIF(i / 2, 0) FROM generate_series(1, 20) i;
INSERT INTO app.members SELECT i, 1 + i % 20 FROM generate_series(1, 100) i;
UPDATE app.teams SET lead_id = id;
CREATE TABLE app.event_notes (id int PRIMARY KEY, event_id bigint, event_at date, note text,
  FOREIGN KEY (event_id, event_at) REFERENCES app.events (id, at));
INSERT INTO app.event_notes SELECT i, i, DATE '2024-01-01' + (i % 700), 'n' || i FROM generate_series(1, 100) i;
CREATE PROCEDURE app.reset_qty() LANGUAGE sql AS $$ UPDATE app.items SET qty = 1 $$;
CREATE VIEW app.expensive AS SELECT id, name, price FROM app.items WHERE price > 100;
COMMENT ON VIEW app.expensive IS 'pricey';
CREATE VIEW app.expensive_names WITH (security_barrier) AS SELECT name FROM app.expensive;
CREATE MATERIALIZED VIEW app.mood_counts AS SELECT mood, count(*) AS n FROM app.items GROUP BY mood;
-- Functions that need views: created after them, views in the one dependency order.
CREATE FUNCTION app.label(e app.expensive) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT e.name || '!' $$;
CREATE FUNCTION app.moods() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT sum(n) FROM app.mood_counts; END;
CREATE VIEW app.labels AS SELECT app.label(e) AS label FROM app.expensive e;
-- Queries that need a primary key (GROUP BY it selects the other columns): after the keys.
CREATE VIEW app.item_tags AS SELECT i.id, i.name COLLATE "C" AS name, count(t) AS tags FROM app.items i, unnest(i.tags) t GROUP BY i.id;
CREATE MATERIALIZED VIEW app.item_tag_counts AS SELECT i.id, i.name, count(t) AS tags FROM app.items i, unnest(i.tags) t GROUP BY i.id;
CREATE VIEW app.tagged AS SELECT name FROM app.item_tag_counts WHERE tags > 1;
COMMENT ON OPERATOR app.~= (numeric, numeric) IS 'about equal';
CREATE OPERATOR FAMILY app.fam USING btree;
COMMENT ON OPERATOR FAMILY app.fam USING btree IS 'a family';
CREATE OPERATOR CLASS app.numr_ops FOR TYPE numeric USING hash AS OPERATOR 1 =, FUNCTION 1 hash_numeric(numeric);
COMMENT ON OPERATOR CLASS app.numr_ops USING hash IS 'a class';
ALTER TABLE app.items ALTER COLUMN name SET STATISTICS 500;
ALTER TABLE app.items ALTER COLUMN qty SET (n_distinct = 5);
CREATE RULE cache_keep AS ON DELETE TO app.cache WHERE old.k = 'keep' DO INSTEAD NOTHING;
CREATE TRIGGER items_touch BEFORE UPDATE ON app.items FOR EACH ROW EXECUTE FUNCTION app.touch();
INSERT INTO app.items (id, name, qty, price, mood, tags, dims, band)
SELECT i, 'Item ' || i, 1 + i % 5, i * 7.5, (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::app.mood, ARRAY['x', i::text],
       ROW(i, 'p' || i)::app.pair, app.numr(i, i + 1)
FROM generate_series(1, 200) i;
INSERT INTO app.bookings (item_id, during) SELECT i, tsrange('2024-01-01'::timestamp + i * interval '1 day', '2024-01-01'::timestamp + (i + 1) * interval '1 day') FROM generate_series(1, 50) i;
INSERT INTO app.cache VALUES ('keep', '{"a": 1}'), ('other', NULL);
`

// crmSchema is selected table by table, with schema, table and column renames.
const crmSchema = `
CREATE SCHEMA crm;
CREATE TYPE crm.tier AS ENUM ('gold', 'silver');
CREATE FUNCTION crm.next_code() RETURNS text LANGUAGE sql AS $$ SELECT 'C' || floor(random() * 1000)::int $$;
CREATE FUNCTION crm.stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.changed := now(); RETURN NEW; END $$;
CREATE FUNCTION crm.unrelated() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE TABLE crm.customers (
  id serial PRIMARY KEY,
  name text NOT NULL CONSTRAINT name_long CHECK (length(name) > 1),
  code text DEFAULT crm.next_code(),
  tier crm.tier,
  upper_name text GENERATED ALWAYS AS (upper(name)) STORED,
  changed timestamptz
);
COMMENT ON COLUMN crm.customers.name IS 'full name';
CREATE UNIQUE INDEX customers_lower_name ON crm.customers (lower(name)) WHERE tier IS NOT NULL;
CREATE TRIGGER customers_stamp BEFORE UPDATE ON crm.customers FOR EACH ROW EXECUTE FUNCTION crm.stamp();
CREATE TABLE crm.notes (
  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  customer_id int REFERENCES crm.customers (id),
  body text,
  changed timestamptz
);
COMMENT ON TABLE crm.notes IS 'notes';
CREATE TRIGGER notes_stamp BEFORE INSERT OR UPDATE ON crm.notes FOR EACH ROW EXECUTE FUNCTION crm.stamp();
CREATE RULE notes_keep AS ON DELETE TO crm.notes WHERE old.body = 'keep' DO INSTEAD NOTHING;
CREATE VIEW crm.unrelated_view AS SELECT 1 AS one;
INSERT INTO crm.customers (name, tier) SELECT 'customer ' || i, (ARRAY['gold', 'silver'])[1 + i % 2]::crm.tier FROM generate_series(1, 100) i;
INSERT INTO crm.notes (customer_id, body) SELECT 1 + i % 100, 'note ' || i FROM generate_series(1, 300) i;
`

// schemaDump is pg_dump --schema-only of one schema, cut into statements without comments and
// session settings, sorted; rename maps destination words back to source words first.
func schemaDump(t *testing.T, pg *testharness.Postgres, db, schema string, rename map[string]string) []string {
	t.Helper()
	// One pg_dump for both sides, new enough for both servers: IvorySQL's (18) in an Oracle
	// subtest, else PostgreSQL's.
	bin, err := testharness.BinDir()
	if d, _ := destOf.Load(t.Name()); d == oracleDest {
		bin, err = testharness.IvorySQLBinDir()
	}
	require.NoError(t, err)
	out, err := exec.Command(filepath.Join(bin, "pg_dump"), "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres",
		"--schema-only", "--no-owner", "--no-privileges", "--no-tablespaces", "-n", schema, db).CombinedOutput()
	require.NoError(t, err, string(out))
	text := string(out)
	for from, to := range rename {
		text = regexp.MustCompile(`\b`+regexp.QuoteMeta(from)+`\b`).ReplaceAllString(text, to)
	}
	stmts := dumpStatements(text)
	for i, st := range stmts {
		stmts[i] = normalizeDeparse(st, schema)
	}
	sort.Strings(stmts)
	return stmts
}

var (
	notNullName = regexp.MustCompile(`CONSTRAINT \w+_not_null NOT NULL`)
	qualified   = regexp.MustCompile(`\b([a-z_]+)\.([a-z_]+)`)
)

// normalizeDeparse removes what differs between server versions, not between definitions:
// PostgreSQL 18 names NOT NULL constraints and deparses view columns without their table; the
// source (15) does neither.
func normalizeDeparse(st, schema string) string {
	st = notNullName.ReplaceAllString(st, "NOT NULL")
	if strings.HasPrefix(st, "CREATE VIEW") || strings.HasPrefix(st, "CREATE OR REPLACE VIEW") || strings.HasPrefix(st, "CREATE MATERIALIZED VIEW") {
		st = qualified.ReplaceAllStringFunc(st, func(m string) string {
			if p := qualified.FindStringSubmatch(m); p[1] != schema {
				return p[2]
			}
			return m
		})
	}
	return st
}

// runSchemaTask syncs schema and data (no incremental) and returns the final status.
func runSchemaTask(t *testing.T, s spec.Spec) api.Status {
	t.Helper()
	c := startWorker(t, t.TempDir())
	no := false
	s.Sync.Incremental = &no
	run := startTask(t, c, s, nil)
	var st api.Status
	testharness.Eventually(t, 3*time.Minute, func() error {
		st = status(t, c, run.GetID())
		switch st.Phase {
		case api.PhaseFinished:
			return nil
		case api.PhaseRetrying, api.PhaseFailed, api.PhasePrecheckFailed:
			t.Fatalf("task %s: %s", st.Phase, st.LastError)
		}
		return fmt.Errorf("phase %s", st.Phase)
	})
	return st
}

// TestSchemaEveryObjectKind syncs a whole schema holding every object kind and compares
// pg_dump --schema-only of both sides: no difference. The data arrives too, the materialized view
// is filled, and a second run of the schema steps (a retry) changes nothing.
func TestSchemaEveryObjectKind(t *testing.T) {
	parallel(t)
	eachDestination(t, testSchemaEveryObjectKind)
}

func testSchemaEveryObjectKind(t *testing.T) {
	ctx := context.Background()
	srcPG, dstPG, src, dst := clusterPair(t, false, "app", appSchema)
	testharness.Exec(t, dst, `CREATE EXTENSION IF NOT EXISTS btree_gist`) // unrelated: the destination may have more

	s := spec.Spec{
		Name: "it-schema", Source: srcPG.Endpoint("app"), Destination: dstPG.Endpoint("target"),
		Objects:  []spec.Object{{Schema: "app"}},
		FullLoad: spec.FullLoad{Parallelism: 2, ChunkMB: 1},
		Verify:   spec.Verify{Mode: spec.VerifyChecksum},
	}
	st := runSchemaTask(t, s)
	for _, v := range st.Verify {
		require.True(t, v.Equal, "%+v", v)
	}
	require.Empty(t, st.Schema.Warned)
	for _, want := range []string{"extension citext in schema app", "function app.add_one(i integer)", "function app.reset_qty()",
		"aggregate app.my_max(integer)", "operator app.~=(numeric, numeric)", "view app.expensive", "view app.expensive_names",
		"function app.label(e expensive)", "function app.moods()", "view app.labels", "view app.item_tags",
		"materialized view app.item_tag_counts", "view app.tagged",
		"materialized view app.mood_counts", "rule cache_keep on app.cache", "trigger items_touch on app.items",
		"sequence app.ticket_seq"} {
		require.Contains(t, st.Schema.Created, want)
	}
	srcDump := schemaDump(t, srcPG, "app", "app", nil)
	require.Equal(t, srcDump, schemaDump(t, dstPG, "target", "app", nil))

	// A schema step retried after a crash finishes without errors and without duplicates.
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{Open: dbconn.Opener{}, Log: zaptest.NewLogger(t)}
	env.RegisterActivity(acts)
	s.ApplyDefaults()
	v, err := env.ExecuteActivity(acts.ResolveTables, s)
	require.NoError(t, err)
	var tables []spec.TableMap
	require.NoError(t, v.Get(&tables))
	for _, step := range []any{acts.SchemaPreData, acts.SchemaPostData} {
		v, err := env.ExecuteActivity(step, activities.SchemaInput{Spec: s, Tables: tables})
		require.NoError(t, err)
		var rep activities.SchemaReport
		require.NoError(t, v.Get(&rep))
		require.NotEmpty(t, rep.Skipped, "existing objects are skipped")
	}
	require.Equal(t, srcDump, schemaDump(t, dstPG, "target", "app", nil), "nothing doubled")

	var n int64
	require.NoError(t, dst.QueryRow(ctx, `SELECT sum(n) FROM app.mood_counts`).Scan(&n))
	require.Equal(t, int64(200), n, "the materialized view is filled")
	require.NoError(t, dst.QueryRow(ctx, `SELECT app.moods()`).Scan(&n))
	require.Equal(t, int64(200), n, "a function reading the materialized view")
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM app.tagged`).Scan(&n))
	require.Equal(t, int64(200), n, "a materialized view grouped by a key is filled")
	var next int64
	require.NoError(t, dst.QueryRow(ctx, `SELECT nextval('app.ticket_seq')`).Scan(&next))
	require.Equal(t, int64(110), next, "a standalone sequence continues where the source is")
	require.NoError(t, dst.QueryRow(ctx, `SELECT app.my_max(qty) FROM app.items`).Scan(&n))
	require.Equal(t, int64(5), n)
	require.NoError(t, testharness.CompareRows(ctx, src, dst, spec.QName{Schema: "app", Name: "events"}, spec.QName{Schema: "app", Name: "events"},
		[]string{"id", "at", "kind"}, []string{"id", "at", "kind"}, []string{"id", "at"}, []string{"id", "at"}), "partitions loaded once each")
	var srcLeaf int64
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM ONLY app.events_2024_a`).Scan(&srcLeaf))
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM ONLY app.events_2024_a`).Scan(&n))
	require.Positive(t, n)
	require.Equal(t, srcLeaf, n, "rows land in their own partition")
}

// TestSchemaWithRenames selects tables of a schema with schema, table and column renames: what
// the tables need comes along (types, sequences, default and trigger functions, indexes,
// constraints, triggers, rules, comments), renamed everywhere Skein generates the SQL; a trigger
// whose table is renamed is reported instead of being rewritten; unrelated objects stay behind.
func TestSchemaWithRenames(t *testing.T) {
	parallel(t)
	eachDestination(t, testSchemaWithRenames)
}

func testSchemaWithRenames(t *testing.T) {
	ctx := context.Background()
	srcPG, dstPG, _, dst := clusterPair(t, false, "crm", crmSchema)

	s := spec.Spec{
		Name: "it-schema-renames", Source: srcPG.Endpoint("crm"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "crm", To: "crm2", Tables: []spec.Table{
			{Name: "customers", To: "clients", Columns: map[string]string{"name": "title"}},
			{Name: "notes"},
		}}},
		Verify: spec.Verify{Mode: spec.VerifyChecksum},
	}
	st := runSchemaTask(t, s)
	for _, v := range st.Verify {
		require.True(t, v.Equal, "%+v", v)
	}
	require.Equal(t, []string{"trigger customers_stamp on crm2.clients: not created: its table or columns are renamed (the definition is not rewritten); create it by hand"},
		st.Schema.Warned)

	want := slices.DeleteFunc(schemaDump(t, srcPG, "crm", "crm", nil), func(s string) bool {
		return strings.Contains(s, "customers_stamp") || strings.Contains(s, "unrelated")
	})
	got := schemaDump(t, dstPG, "target", "crm2", map[string]string{"crm2": "crm", "clients": "customers", "title": "name"})
	require.Equal(t, want, got)

	var code string
	require.NoError(t, dst.QueryRow(ctx, `INSERT INTO crm2.clients (title) VALUES ('new one') RETURNING code`).Scan(&code))
	require.True(t, strings.HasPrefix(code, "C"), "the default function came along: %q", code)
}

// TestPermanentSchemaErrorFailsAtOnce: a definition the destination cannot create (a column with
// an ICU collation, into the IvorySQL build that has no ICU) fails the task at once with the
// reason, instead of retrying the same statement for retry.other_minutes: the precheck
// (dest_capabilities) names it before anything is created.
func TestPermanentSchemaErrorFailsAtOnce(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG := testharness.NewPostgres(t, testharness.PostgresOptions{})
	dstPG := testharness.NewIvorySQL(t, testharness.PostgresOptions{})
	require.NoError(t, srcPG.CreateDatabase(ctx, "icu"))
	require.NoError(t, dstPG.CreateDatabase(ctx, "target"))
	src, err := srcPG.Connect(ctx, "icu")
	require.NoError(t, err)
	defer src.Close(ctx)
	testharness.Exec(t, src, `CREATE SCHEMA intl;
CREATE TABLE intl.names (id int PRIMARY KEY, name text COLLATE "und-x-icu");
INSERT INTO intl.names VALUES (1, 'Ångström'), (2, 'Zoë');`)
	dst, err := dstPG.Connect(ctx, "target")
	require.NoError(t, err)
	defer dst.Close(ctx)
	if _, err := dst.Exec(ctx, `SELECT 'x' COLLATE "und-x-icu"`); err == nil {
		t.Skip("this destination has ICU collations: nothing fails")
	}

	c := startWorker(t, t.TempDir())
	no := false
	s := spec.Spec{Name: "it-permanent", Source: srcPG.Endpoint("icu"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "intl"}}, Sync: spec.Sync{Incremental: &no}}
	start := time.Now()
	run := startTask(t, c, s, nil)
	st := waitPhase(t, c, run.GetID(), api.PhasePrecheckFailed, time.Minute)
	require.Less(t, time.Since(start), 45*time.Second, "fails at once, not after the retry window")
	require.Contains(t, st.LastError, "dest_capabilities")
	require.Contains(t, st.LastError, "und-x-icu")
	require.Contains(t, st.LastError, "intl.names")
	var n int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'intl'`).Scan(&n))
	require.Zero(t, n, "nothing was created")
}
