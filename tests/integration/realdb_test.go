package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// realisticSchema is laid out as databases restored from older dumps and grown by hand are, not
// as a fixture written to pass: sequences created apart from their columns (one in a schema that
// is not selected), an identity column that is not the key, an extension installed in public and
// used by an index of the selected schema, a partitioned table whose partitions use the
// parent's sequence, an unlogged table, a keyless table of types without a plain =, and a
// materialized view with the unique index REFRESH ... CONCURRENTLY needs.
const realisticSchema = `
CREATE EXTENSION pg_trgm SCHEMA public;
CREATE SCHEMA app;
CREATE SEQUENCE app.invoice_no START 1000;
CREATE SEQUENCE public.global_id;
CREATE TABLE app.invoices (
  id int PRIMARY KEY DEFAULT nextval('app.invoice_no'),
  ref bigint NOT NULL DEFAULT nextval('public.global_id'),
  seq int GENERATED ALWAYS AS IDENTITY,
  title text,
  amount float8,
  ratio real,
  issued date DEFAULT DATE '2024-01-01',
  span interval,
  raw bytea
);
CREATE INDEX invoices_title_trgm ON app.invoices USING gin (title public.gin_trgm_ops);
INSERT INTO app.invoices (title, amount, ratio, span, raw)
SELECT 'invoice ' || i, i / 3.0, i / 7.0, make_interval(days => i, secs => i / 3.0), decode(md5(i::text), 'hex')
FROM generate_series(1, 500) i;
CREATE TABLE app.measures (id serial, region text, v float8, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE app.measures_eu PARTITION OF app.measures FOR VALUES IN ('eu');
CREATE TABLE app.measures_us PARTITION OF app.measures FOR VALUES IN ('us');
INSERT INTO app.measures (region, v) SELECT CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, i * 0.1 FROM generate_series(1, 200) i;
CREATE UNLOGGED TABLE app.scratch (id int PRIMARY KEY, note text);
INSERT INTO app.scratch SELECT i, 'scratch ' || i FROM generate_series(1, 10) i;
CREATE TABLE app.docs (n int, body json, pos point, area box, note text);
INSERT INTO app.docs VALUES (1, '{"a": 1}', '(1,1)', '((0,0),(1,1))', NULL), (2, '[]', '(2,2)', '((0,0),(2,2))', NULL),
  (3, '{"dup": 1}', '(3,3)', '((0,0),(3,3))', NULL), (3, '{"dup": 1}', '(3,3)', '((0,0),(3,3))', NULL),
  (4, '{}', '(4,4)', '((0,0),(2,2))', NULL), (4, '{}', '(4,4)', '((0,0),(1,4))', NULL);
CREATE MATERIALIZED VIEW app.invoice_totals AS SELECT issued, count(*) AS n, sum(amount) AS total FROM app.invoices GROUP BY issued;
CREATE UNIQUE INDEX invoice_totals_issued ON app.invoice_totals (issued);
`

// hostileRoleSettings change the text form of values for every new session of the role: Skein's
// sessions must pin them (PostgreSQL's own subscriber does), or floats arrive rounded.
const hostileRoleSettings = `
ALTER ROLE postgres SET extra_float_digits = 0;
ALTER ROLE postgres SET DateStyle = 'SQL, DMY';
ALTER ROLE postgres SET IntervalStyle = 'sql_standard';
ALTER ROLE postgres SET bytea_output = 'escape';
`

var realisticChecks = []tableCheck{
	{src: spec.QName{Schema: "app", Name: "invoices"}, dst: spec.QName{Schema: "app", Name: "invoices"},
		srcCols: []string{"id", "ref", "seq", "title", "amount", "ratio", "issued", "span", "raw"}, srcKey: []string{"id"}},
	{src: spec.QName{Schema: "app", Name: "measures"}, dst: spec.QName{Schema: "app", Name: "measures"},
		srcCols: []string{"id", "region", "v"}, srcKey: []string{"id", "region"}},
	{src: spec.QName{Schema: "app", Name: "docs"}, dst: spec.QName{Schema: "app", Name: "docs"},
		srcCols: []string{"n", "note", "body", "pos", "area"}, srcKey: []string{"n", "note"}},
}

// TestRealisticDatabase syncs a whole schema shaped like a real database (realisticSchema)
// through the real dev server, with hostile role settings on both sides, into PostgreSQL and
// into IvorySQL's Oracle-mode port: schema, load and a stream of changes row by row; then a
// partition created while streaming stops the task with its name instead of losing its rows.
func TestRealisticDatabase(t *testing.T) {
	parallel(t)
	eachDestination(t, testRealisticDatabase)
}

func testRealisticDatabase(t *testing.T) {
	ctx := context.Background()
	srcPG, dstPG, src, dst := clusterPair(t, true, "ledger", realisticSchema)
	// The test's own connections were opened before: they read values in the default formats.
	testharness.Exec(t, src, hostileRoleSettings)
	testharness.Exec(t, dst, hostileRoleSettings)

	c := startWorker(t, t.TempDir())
	s := spec.Spec{
		Name: "it-realistic", Source: srcPG.Endpoint("ledger"), Destination: dstPG.Endpoint("target"),
		Objects:  []spec.Object{{Schema: "app"}},
		FullLoad: spec.FullLoad{Parallelism: 2},
		// app.docs has no key and app.scratch is unlogged: both warnings accepted.
		IgnorePrecheck: []string{"primary_keys", "unlogged_tables"},
	}
	run := startTask(t, c, s, nil)
	st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	for _, v := range st.Verify {
		require.True(t, v.Equal, "verification after the full load: %+v", v)
	}
	require.Equal(t, api.NoteUnlogged, findTable(st, "app.scratch").Note, "status says the unlogged table does not stream")
	require.Empty(t, findTable(st, "app.invoices").Note)
	require.NoError(t, compareAll(ctx, src, dst, realisticChecks))

	// The schema: sequences apart from their columns (one outside the selection), set past the
	// loaded values; the extension in its own schema and the index using its operator class;
	// the materialized view with its unique index.
	for _, seq := range []string{"app.invoice_no", "public.global_id"} {
		var last int64
		require.NoError(t, dst.QueryRow(ctx, `SELECT last_value FROM `+seq).Scan(&last), seq)
		require.GreaterOrEqual(t, last, int64(500), "%s is set from the source", seq)
	}
	var n int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_trgm' AND n.nspname = 'public'`).Scan(&n))
	require.Equal(t, 1, n, "pg_trgm created in public, where the source has it")
	var def string
	require.NoError(t, dst.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = 'app' AND indexname = 'invoices_title_trgm'`).Scan(&def))
	require.Contains(t, def, "gin_trgm_ops")
	require.NoError(t, dst.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = 'app' AND indexname = 'invoice_totals_issued'`).Scan(&def))
	require.Contains(t, def, "UNIQUE INDEX")
	testharness.Exec(t, dst, `REFRESH MATERIALIZED VIEW CONCURRENTLY app.invoice_totals`)
	totals := spec.QName{Schema: "app", Name: "invoice_totals"}
	require.NoError(t, testharness.CompareRows(ctx, src, dst, totals, totals, []string{"issued", "n"}, []string{"issued", "n"}, []string{"issued"}, []string{"issued"}))

	// Changes: new rows take both sequences; the identity column that is not the key is left
	// alone by updates; floats keep every digit; keyless rows of json, point and box change one
	// at a time; partitions get their rows.
	stmts := []string{
		`INSERT INTO app.invoices (title, amount, ratio, span, raw) VALUES ('streamed', 0.1 + 0.2, 1.1, '1 year 2 mons -3 days 04:05:06.5', '\x00ff')`,
		`UPDATE app.invoices SET amount = amount + 1e-9, ratio = 0.3, title = title || ' paid' WHERE id BETWEEN 1000 AND 1100`,
		`UPDATE app.invoices SET id = 9000 WHERE id = 1200`,
		`DELETE FROM app.invoices WHERE id BETWEEN 1300 AND 1310`,
		`UPDATE app.docs SET note = 'one', body = '{"b":  2}', pos = '(9,9)' WHERE n = 1`,
		`UPDATE app.docs SET note = 'first of two' WHERE ctid = (SELECT ctid FROM app.docs WHERE n = 3 LIMIT 1)`,
		`UPDATE app.docs SET note = 'tall' WHERE n = 4 AND area ~= '((0,0),(1,4))'`,
		`DELETE FROM app.docs WHERE n = 2`,
		`INSERT INTO app.measures (region, v) VALUES ('eu', 1e-7), ('us', 2.5)`,
		`UPDATE app.measures SET v = v / 3 WHERE id <= 50`,
		`INSERT INTO app.scratch VALUES (11, 'not streamed')`,
	}
	for _, q := range stmts {
		_, err := src.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, realisticChecks) })
	var scratch int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM app.scratch`).Scan(&scratch))
	require.Equal(t, 10, scratch, "the unlogged table was loaded once; its changes do not stream")

	// A partition created while streaming is created on the destination and gets its rows.
	testharness.Exec(t, src, `CREATE TABLE app.measures_asia PARTITION OF app.measures FOR VALUES IN ('asia')`)
	testharness.Exec(t, src, `INSERT INTO app.measures (region, v) VALUES ('asia', 1), ('asia', 0.1 + 0.2)`)
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, realisticChecks) })
	require.Empty(t, status(t, c, run.GetID()).LastError)
}

// TestUnknownPartitionWithoutCaptureStopsTheTask: without schema-change capture (ddl_capture
// ignored), rows of a partition created while streaming are not lost without a word: the task
// stops and names the partition.
func TestUnknownPartitionWithoutCaptureStopsTheTask(t *testing.T) {
	parallel(t)
	srcPG, dstPG, src, _ := clusterPair(t, true, "ledger", `
CREATE SCHEMA app;
CREATE TABLE app.measures (id int, region text, v float8, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE app.measures_eu PARTITION OF app.measures FOR VALUES IN ('eu');`)
	c := startWorker(t, t.TempDir())
	s := spec.Spec{Name: "it-unknown", Source: srcPG.Endpoint("ledger"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "app"}}, IgnorePrecheck: []string{"ddl_capture"}}
	run := startTask(t, c, s, nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	testharness.Exec(t, src, `CREATE TABLE app.measures_asia PARTITION OF app.measures FOR VALUES IN ('asia')`)
	testharness.Exec(t, src, `INSERT INTO app.measures VALUES (1, 'asia', 1)`)
	st := waitPhase(t, c, run.GetID(), api.PhaseFailed, 2*time.Minute)
	require.Contains(t, st.LastError, "app.measures_asia")
	require.Contains(t, st.LastError, "a partition of app.measures created or attached after the task started")
	require.Equal(t, 1, st.Retry.Attempts, "failed at the first attempt: the error is permanent")
}
