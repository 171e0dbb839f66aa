package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestRowFilter syncs a table with a where filter and a column rename: the full load copies the
// matching rows, and the change stream follows old-row semantics (an update that leaves the
// filter deletes on the destination, one that enters it inserts the whole row, TOASTed values
// included). On-demand verification compares what should be equal and finds it clean.
func TestRowFilter(t *testing.T) {
	parallel(t)
	eachDestination(t, testRowFilter)
}

func testRowFilter(t *testing.T) {
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	testharness.Exec(t, src, `CREATE TABLE shop.regional (id int PRIMARY KEY, region text NOT NULL, v text, big text);
INSERT INTO shop.regional SELECT i, CASE WHEN i % 3 = 0 THEN 'eu' ELSE 'us' END, 'v' || i,
  CASE WHEN i % 50 = 0 THEN repeat(md5(i::text), 3000) END
FROM generate_series(1, 3000) i;`)
	c := startWorker(t, t.TempDir())
	s := spec.Spec{
		Name: "it-filter", Source: srcPG.Endpoint("shop"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "shop", To: "mart", Tables: []spec.Table{
			{Name: "regional", Where: "region = 'eu'", Columns: map[string]string{"v": "value"}},
		}}},
		FullLoad: spec.FullLoad{Parallelism: 2, ChunkMB: 1},
	}
	run := startTask(t, c, s, nil)
	st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	require.Len(t, st.Verify, 1)
	require.True(t, st.Verify[0].Equal, "%+v", st.Verify[0])
	require.Equal(t, int64(1000), st.Verify[0].SourceRows)

	rowsOf := func(conn *pgx.Conn, sql string) []string {
		r, err := conn.Query(ctx, sql)
		require.NoError(t, err)
		out, err := pgx.CollectRows(r, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	same := func() error {
		want := rowsOf(src, `SELECT concat_ws('|', id, region, v, md5(big)) FROM shop.regional WHERE region = 'eu' ORDER BY id`)
		got := rowsOf(dst, `SELECT concat_ws('|', id, region, value, md5(big)) FROM mart.regional ORDER BY id`)
		if !slices.Equal(want, got) {
			return fmt.Errorf("destination has %d rows, the filtered source %d", len(got), len(want))
		}
		return nil
	}
	require.NoError(t, same())

	testharness.Exec(t, src, `INSERT INTO shop.regional VALUES (10001, 'eu', 'new eu', NULL), (10002, 'us', 'new us', NULL);
UPDATE shop.regional SET region = 'us' WHERE id = 3;                 -- leaves the filter: deleted
UPDATE shop.regional SET region = 'eu' WHERE id IN (50, 100, 101);   -- enter it: inserted, TOASTed big included
UPDATE shop.regional SET v = 'edited' WHERE id IN (6, 7);            -- 6 is eu, 7 is not
DELETE FROM shop.regional WHERE id IN (9, 10);                       -- 9 is eu, 10 is not
UPDATE shop.regional SET v = 'edited again' WHERE id = 50;           -- big unchanged`)
	testharness.Eventually(t, time.Minute, same)
	var big string
	require.NoError(t, dst.QueryRow(ctx, `SELECT big FROM mart.regional WHERE id = 50`).Scan(&big))
	require.Len(t, big, 32*3000, "a row entering the filter arrives with its TOASTed value")

	rep := verifyTask(t, c, run.GetID())
	require.True(t, rep.Equal, "%+v", rep)
	require.Equal(t, int64(1002), rep.Tables[0].SourceRows)
}

// TestPartitionedIncremental selects a partitioned table by name (its partitions come along) into
// a renamed schema; rows load through the partitions, and changes, including an update that
// moves a row to another partition, apply to the right ones.
func TestPartitionedIncremental(t *testing.T) {
	parallel(t)
	eachDestination(t, testPartitionedIncremental)
}

func testPartitionedIncremental(t *testing.T) {
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	testharness.Exec(t, src, `CREATE TABLE shop.metrics (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE shop.metrics_h1 PARTITION OF shop.metrics FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE shop.metrics_h2 PARTITION OF shop.metrics FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
INSERT INTO shop.metrics SELECT i, DATE '2024-01-01' + i % 360, 'v' || i FROM generate_series(1, 2000) i;`)
	c := startWorker(t, t.TempDir())
	s := spec.Spec{
		Name: "it-partitions", Source: srcPG.Endpoint("shop"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "shop", To: "mart", Tables: []spec.Table{{Name: "metrics"}}}},
	}
	run := startTask(t, c, s, nil)
	st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	require.Len(t, st.Tables, 3, "the partitions are selected with their parent")
	for _, v := range st.Verify {
		require.True(t, v.Equal, "%+v", v)
	}
	testharness.Exec(t, src, `INSERT INTO shop.metrics VALUES (5000, '2024-02-01', 'new h1'), (5001, '2024-08-01', 'new h2');
UPDATE shop.metrics SET at = '2024-12-01', v = 'moved' WHERE id = 10;
UPDATE shop.metrics SET v = 'edited' WHERE id = 11;
DELETE FROM shop.metrics WHERE id = 12`)
	leaves := []tableCheck{}
	for _, leaf := range []string{"metrics_h1", "metrics_h2"} {
		leaves = append(leaves, tableCheck{src: spec.QName{Schema: "shop", Name: leaf}, dst: spec.QName{Schema: "mart", Name: leaf},
			srcCols: []string{"id", "at", "v"}, srcKey: []string{"id", "at"}})
	}
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, leaves) })
	var v string
	require.NoError(t, dst.QueryRow(ctx, `SELECT v FROM ONLY mart.metrics_h2 WHERE id = 10`).Scan(&v))
	require.Equal(t, "moved", v)
}
