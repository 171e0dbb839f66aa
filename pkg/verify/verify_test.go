package verify_test

import (
	"context"
	"crypto/md5"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/ddl"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/pkg/verify"
)

// The source tables; the destination has the same rows under other names: schema m, kv renamed
// to kv2 with column v renamed to value.
const sourceSQL = `
CREATE TABLE public.kv (id int PRIMARY KEY, v text, f float8, ts timestamptz, b bytea, iv interval, tags text[]);
INSERT INTO public.kv SELECT i, 'v' || i, i / 3.0, TIMESTAMPTZ '2024-01-01 00:00+00' + i * interval '1 min',
  decode(md5(i::text), 'hex'), i * interval '1 sec', ARRAY['a', NULL]
FROM generate_series(1, 5000) i;
CREATE TABLE public.pair (a int, b text, n int, PRIMARY KEY (a, b));
INSERT INTO public.pair SELECT i % 10, 'k' || i, i FROM generate_series(1, 300) i;
CREATE TABLE public.nokey (x int, y text);
INSERT INTO public.nokey SELECT i % 50, 'y' FROM generate_series(1, 200) i;
CREATE TABLE public.ev (id int PRIMARY KEY, n int);
INSERT INTO public.ev SELECT i, i FROM generate_series(1, 2000) i;
CREATE TABLE public.evk (n int);
INSERT INTO public.evk SELECT i FROM generate_series(1, 100) i;
`

const destSQL = `
CREATE SCHEMA m;
CREATE TABLE m.kv2 (id int PRIMARY KEY, value text, f float8, ts timestamptz, b bytea, iv interval, tags text[]);
INSERT INTO m.kv2 SELECT i, 'v' || i, i / 3.0, TIMESTAMPTZ '2024-01-01 00:00+00' + i * interval '1 min',
  decode(md5(i::text), 'hex'), i * interval '1 sec', ARRAY['a', NULL]
FROM generate_series(1, 5000) i;
CREATE TABLE m.pair (a int, b text, n int, PRIMARY KEY (a, b));
INSERT INTO m.pair SELECT i % 10, 'k' || i, i FROM generate_series(1, 300) i;
CREATE TABLE m.nokey (x int, y text);
INSERT INTO m.nokey SELECT i % 50, 'y' FROM generate_series(1, 200) i;
-- ev and evk are filtered (n % 2 = 0): the destination holds the even rows only.
CREATE TABLE m.ev (id int PRIMARY KEY, n int);
INSERT INTO m.ev SELECT i, i FROM generate_series(2, 2000, 2) i;
CREATE TABLE m.evk (n int);
INSERT INTO m.evk SELECT i FROM generate_series(2, 100, 2) i;
-- Output settings differ on purpose: verify.Session makes the row texts comparable.
SET TimeZone = 'Asia/Tokyo';
`

type fixture struct {
	src, dst *pgx.Conn
	tables   []verify.Table
	mapper   ddl.Mapper
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{})
	require.NoError(t, pg.CreateDatabase(ctx, "a"))
	require.NoError(t, pg.CreateDatabase(ctx, "b"))
	f := &fixture{}
	var err error
	f.src, err = pg.Connect(ctx, "a")
	require.NoError(t, err)
	t.Cleanup(func() { f.src.Close(ctx) })
	f.dst, err = pg.Connect(ctx, "b")
	require.NoError(t, err)
	t.Cleanup(func() { f.dst.Close(ctx) })
	_, err = f.src.Exec(ctx, sourceSQL)
	require.NoError(t, err)
	_, err = f.dst.Exec(ctx, destSQL)
	require.NoError(t, err)
	maps := []spec.TableMap{
		{Source: spec.QName{Schema: "public", Name: "kv"}, Dest: spec.QName{Schema: "m", Name: "kv2"}, Columns: map[string]string{"v": "value"}},
		{Source: spec.QName{Schema: "public", Name: "pair"}, Dest: spec.QName{Schema: "m", Name: "pair"}},
		{Source: spec.QName{Schema: "public", Name: "nokey"}, Dest: spec.QName{Schema: "m", Name: "nokey"}},
		{Source: spec.QName{Schema: "public", Name: "ev"}, Dest: spec.QName{Schema: "m", Name: "ev"}, Where: "n % 2 = 0"},
		{Source: spec.QName{Schema: "public", Name: "evk"}, Dest: spec.QName{Schema: "m", Name: "evk"}, Where: "n % 2 = 0"},
	}
	defs, err := catalog.LoadTables(ctx, f.src, maps)
	require.NoError(t, err)
	for i, d := range defs {
		f.tables = append(f.tables, verify.Table{Def: d, Map: maps[i], ChunkRows: 700})
	}
	f.mapper = ddl.SpecMapper{Objects: []spec.Object{{Schema: "public", To: "m"}}, Tables: maps}
	require.NoError(t, verify.Session(ctx, f.src))
	require.NoError(t, verify.Session(ctx, f.dst))
	return f
}

func (f *fixture) run(t *testing.T, opts verify.Options) []verify.TableResult {
	t.Helper()
	opts.Mapper = f.mapper
	if opts.Mode == "" {
		opts.Mode = spec.VerifyChecksum
	}
	res, err := verify.Run(context.Background(), []verify.Pair{{Src: f.src, Dst: f.dst}}, f.tables, opts)
	require.NoError(t, err)
	require.Len(t, res, len(f.tables))
	return res
}

func TestVerify(t *testing.T) {
	f := setup(t)

	t.Run("identical sides are equal, in chunks", func(t *testing.T) {
		var done, total int
		res := f.run(t, verify.Options{Progress: func(d, n int) { done, total = d, n }})
		for _, r := range res {
			require.True(t, r.Equal, "%+v", r)
			require.Empty(t, r.Diffs)
		}
		require.Equal(t, int64(5000), res[0].SourceRows)
		require.Equal(t, int64(5000), res[0].DestRows)
		require.Equal(t, 8, res[0].Chunks, "5000 rows at 700 per chunk")
		require.Equal(t, 8, res[0].ChunksChecked)
		require.Equal(t, 1, res[2].Chunks, "a table without a key is one chunk")
		require.Equal(t, total, done)
		require.Equal(t, int64(1000), res[3].SourceRows, "the filter applies on the source")
		require.Equal(t, 8+1+1+2+1, total, "pair: 300 rows fit one chunk; ev: 1000 filtered rows, 2 chunks")
	})

	t.Run("sampled chunks", func(t *testing.T) {
		res := f.run(t, verify.Options{SamplePercent: 25, Rand: rand.New(rand.NewPCG(1, 2))})
		require.Equal(t, 8, res[0].Chunks)
		require.Equal(t, 2, res[0].ChunksChecked)
		require.True(t, res[0].Equal)
		require.Less(t, res[0].SourceRows, int64(5000))
	})

	// Differences made on the destination, each reported by its key.
	testharness.Exec(t, f.dst, `DELETE FROM m.kv2 WHERE id = 5;
INSERT INTO m.kv2 (id, value) VALUES (99999, 'extra');
UPDATE m.kv2 SET value = 'changed' WHERE id = 4321;
UPDATE m.kv2 SET f = f + 1e-12 WHERE id = 2000;
UPDATE m.pair SET n = -1 WHERE a = 3 AND b = 'k13';
DELETE FROM m.nokey WHERE ctid = (SELECT ctid FROM m.nokey WHERE x = 7 LIMIT 1);
INSERT INTO m.nokey VALUES (1000, 'new');
INSERT INTO m.ev VALUES (3, 3)`)

	t.Run("differences by key", func(t *testing.T) {
		res := f.run(t, verify.Options{})
		kv, pair, nokey := res[0], res[1], res[2]
		require.False(t, kv.Equal)
		require.ElementsMatch(t, []verify.Diff{
			{Kind: verify.Missing, Key: "id=5"}, {Kind: verify.Extra, Key: "id=99999"},
			{Kind: verify.Different, Key: "id=4321"}, {Kind: verify.Different, Key: "id=2000"},
		}, kv.Diffs)
		require.Equal(t, [3]int64{1, 1, 2}, [3]int64{kv.Missing, kv.Extra, kv.Different})
		require.Equal(t, []verify.Diff{{Kind: verify.Different, Key: "a=3, b=k13"}}, pair.Diffs)
		// A row without a key is named by its hash, not its values.
		md5 := func(s string) string { return fmt.Sprintf("row md5 %x", md5.Sum([]byte(s))) }
		require.ElementsMatch(t, []verify.Diff{{Kind: verify.Missing, Key: md5("(7,y)")}, {Kind: verify.Extra, Key: md5("(1000,new)")}}, nokey.Diffs)
		require.Equal(t, []verify.Diff{{Kind: verify.Extra, Key: "id=3"}}, res[3].Diffs, "a row outside the filter is extra")
		require.True(t, res[4].Equal)
	})

	t.Run("count mode compares counts", func(t *testing.T) {
		res := f.run(t, verify.Options{Mode: spec.VerifyCount})
		require.True(t, res[0].Equal, "one row missing and one extra: the counts agree")
		require.True(t, res[1].Equal)
		require.True(t, res[2].Equal)
		require.Equal(t, int64(1), res[3].Extra)
		require.True(t, res[4].Equal)
	})

	t.Run("the report is capped, the totals are not", func(t *testing.T) {
		res := f.run(t, verify.Options{MaxDiffs: 1})
		require.Len(t, res[0].Diffs, 1)
		require.Equal(t, int64(4), res[0].Missing+res[0].Extra+res[0].Different)
	})

	t.Run("re-checks settle differences the apply had not reached", func(t *testing.T) {
		settles := 0
		res := f.run(t, verify.Options{Rounds: 3, Settle: func(ctx context.Context) error {
			settles++
			if settles == 1 {
				// The "apply" catches up with two of the differences.
				testharness.Exec(t, f.dst, `INSERT INTO m.kv2 SELECT * FROM (VALUES (5, 'v5', 5 / 3.0, TIMESTAMPTZ '2024-01-01 00:00+00' + 5 * interval '1 min',
  decode(md5('5'), 'hex'), 5 * interval '1 sec', ARRAY['a', NULL])) AS v;
UPDATE m.pair SET n = 13 WHERE a = 3 AND b = 'k13'`)
			}
			// A row that changes on the source all the time is never proven either way.
			testharness.Exec(t, f.src, fmt.Sprintf(`UPDATE public.kv SET v = 'moving %d' WHERE id = 4321`, settles))
			return nil
		}})
		require.Equal(t, 3, settles, "every round settles once")
		require.ElementsMatch(t, []verify.Diff{
			{Kind: verify.Extra, Key: "id=99999"}, {Kind: verify.Different, Key: "id=2000"}, {Kind: verify.Changing, Key: "id=4321"},
		}, res[0].Diffs)
		require.True(t, res[1].Equal, "%+v", res[1])
		require.False(t, res[2].Equal)
		require.Equal(t, []verify.Diff{{Kind: verify.Extra, Key: "id=3"}}, res[3].Diffs)
		require.True(t, res[4].Equal)
	})
}

// TestRangeTargetsAreConfirmed: a chunk becomes a range target only for differences that the
// re-check confirmed; rows that differed until the apply passed them do not count.
func TestRangeTargetsAreConfirmed(t *testing.T) {
	tests := []struct {
		name       string
		catchUp    string // what the "apply" fixes on the destination before the re-check
		wantRanges int
		wantKeys   int
	}{
		{"the apply passes most of them: rows", `UPDATE m.kv2 SET value = 'v' || id WHERE id BETWEEN 1401 AND 1440`, 0, 10},
		{"they stay: the range", ``, 1, 0},
		{"the apply passes all of them: nothing", `UPDATE m.kv2 SET value = 'v' || id WHERE id BETWEEN 1401 AND 1450`, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			testharness.Exec(t, f.dst, `UPDATE m.kv2 SET value = 'behind' WHERE id BETWEEN 1401 AND 1450`)
			var targets *verify.Targets
			res := f.run(t, verify.Options{RangeAt: 20, Rounds: 2,
				Settle: func(context.Context) error {
					if tt.catchUp != "" {
						testharness.Exec(t, f.dst, tt.catchUp)
					}
					return nil
				},
				OnTargets: func(i int, tg verify.Targets) {
					if i == 0 {
						targets = &tg
					}
				}})
			require.Equal(t, int64(tt.wantKeys+50*tt.wantRanges), res[0].Different, "%+v", res[0])
			if tt.wantRanges+tt.wantKeys == 0 {
				require.Nil(t, targets, "no repair for differences that resolved")
				return
			}
			require.NotNil(t, targets)
			require.Len(t, targets.Ranges, tt.wantRanges)
			require.Len(t, targets.Keys, tt.wantKeys)
		})
	}
}

func TestChunkRowsFor(t *testing.T) {
	tests := []struct {
		name             string
		rows, blocks, mb int64
		want             int64
	}{
		{"no statistics", 0, 0, 64, 0},
		{"100 byte rows, 1 MB", 81920, 1000, 1, 10485},
		{"at least 1000", 10, 1000, 1, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def := &catalog.Table{RowsEstimate: tt.rows, Blocks: tt.blocks, BlockSize: 8192}
			require.Equal(t, tt.want, verify.ChunkRowsFor(def, int(tt.mb)))
		})
	}
}

// TestRenewSourceBoundsTableLocks: a source transaction is replaced after RenewEvery uses, so it
// never holds locks on more tables than that (thousands of tables would exhaust the lock table).
func TestRenewSourceBoundsTableLocks(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	lockedTables := func(q verify.Querier) int {
		var n int
		require.NoError(t, q.QueryRow(ctx, `SELECT count(DISTINCT l.relation) FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_class c ON c.oid = l.relation
WHERE l.pid = pg_catalog.pg_backend_pid() AND c.relkind = 'r' AND c.relnamespace = 'public'::pg_catalog.regnamespace`).Scan(&n))
		return n
	}
	for _, tc := range []struct {
		name      string
		renew     bool
		maxLocked int
	}{
		{"without renewal the transaction locks every table", false, 5},
		{"renewed every 2 uses it locks at most 2 tables", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := f.src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
			require.NoError(t, err)
			renewals, most := 0, 0
			opts := verify.Options{Mode: spec.VerifyChecksum, Mapper: f.mapper, ChunkRows: 100000}
			if tc.renew {
				opts.RenewEvery = 2
				opts.RenewSource = func(ctx context.Context, src verify.Querier) (verify.Querier, error) {
					renewals++
					most = max(most, lockedTables(src))
					if err := src.(pgx.Tx).Commit(ctx); err != nil {
						return nil, err
					}
					return f.src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
				}
			}
			res, err := verify.Run(ctx, []verify.Pair{{Src: tx, Dst: f.dst}}, f.tables, opts)
			require.NoError(t, err)
			for _, r := range res {
				require.True(t, r.Equal, "%+v", r)
			}
			if tc.renew {
				require.Positive(t, renewals)
			} else {
				most = lockedTables(tx)
			}
			require.Equal(t, tc.maxLocked, most)
			_, _ = f.src.Exec(ctx, "ROLLBACK")
		})
	}
}

// TestRepair: every kind of difference, on keyed, composite-key (with quotes, backslashes and
// braces in the key), keyless and filtered tables, and a chunk with so many differing rows
// that its key range is re-copied, is found and then repaired from a snapshot of the source; a
// second comparison is equal.
func TestRepair(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	odd := `q'"\{},x`
	testharness.Exec(t, f.src, fmt.Sprintf(`INSERT INTO public.pair VALUES (1, %s, 7), (2, %s, 8)`, pgLiteral(odd), pgLiteral(odd+"2")))
	testharness.Exec(t, f.dst, fmt.Sprintf(`INSERT INTO m.pair VALUES (1, %s, 70)`, pgLiteral(odd)))
	testharness.Exec(t, f.dst, `DELETE FROM m.kv2 WHERE id = 5;
INSERT INTO m.kv2 (id, value) VALUES (99999, 'extra');
UPDATE m.kv2 SET value = 'changed' WHERE id = 4321;
UPDATE m.kv2 SET f = f + 1e-12, tags = NULL WHERE id = 2000;
UPDATE m.kv2 SET value = 'many' WHERE id BETWEEN 1401 AND 1450;
UPDATE m.pair SET n = -1 WHERE a = 3 AND b = 'k13';
DELETE FROM m.nokey WHERE ctid = (SELECT ctid FROM m.nokey WHERE x = 7 LIMIT 1);
INSERT INTO m.nokey VALUES (1000, 'new'), (8, 'y'), (8, 'y');
INSERT INTO m.ev VALUES (3, 3);
DELETE FROM m.ev WHERE id = 4;
DELETE FROM m.evk WHERE n = 6`)

	targets := map[int]verify.Targets{}
	res := f.run(t, verify.Options{RangeAt: 20, OnTargets: func(i int, tg verify.Targets) { targets[i] = tg }})
	for i, r := range res {
		require.False(t, r.Equal, "%s differs", r.Source)
		require.Contains(t, targets, i, "%s has repair targets", r.Source)
	}
	require.Len(t, targets[0].Ranges, 1, "the chunk of ids 1401..2100 is re-copied as a range")
	require.Empty(t, targets[1].Ranges)
	require.Len(t, targets[1].Keys, 3)
	require.NotEmpty(t, targets[2].Hashes)

	src, err := f.src.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	require.NoError(t, err)
	defer src.Rollback(ctx) //nolint:errcheck // read-only
	dst, err := f.dst.Begin(ctx)
	require.NoError(t, err)
	var total verify.Repaired
	for i, tg := range targets {
		r, err := verify.Repair(ctx, src, dst, f.tables[i], tg, verify.Options{Mapper: f.mapper})
		require.NoError(t, err, f.tables[i].Map.Source.String())
		total.Deleted += r.Deleted
		total.Inserted += r.Inserted
	}
	require.NoError(t, dst.Commit(ctx))
	require.Positive(t, total.Inserted)
	require.Positive(t, total.Deleted)

	for _, r := range f.run(t, verify.Options{}) {
		require.True(t, r.Equal, "%+v", r)
	}
	var n int64
	require.NoError(t, f.dst.QueryRow(ctx, `SELECT count(*) FROM m.nokey WHERE x = 8`).Scan(&n))
	require.Equal(t, int64(4), n, "surplus copies of a row without a key are deleted, the source's copies kept")
}

// pgLiteral writes s as an SQL string constant.
func pgLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}
