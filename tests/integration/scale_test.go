package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// manyTables is the table count of TestManyTables (SKEIN_TEST_TABLES overrides it).
func manyTables(t *testing.T) int {
	n := 10000
	if v := os.Getenv("SKEIN_TEST_TABLES"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err, "SKEIN_TEST_TABLES")
	}
	return n
}

// TestManyTables syncs a schema of 10,000 tables (schema, full load with verification,
// incremental, continue-as-new): no payload of the task's history nor its status answer may grow
// past Temporal's limits (2 MB each), and the history stays far from its own (50 MB). Before large
// payloads were compressed the status answer failed at 2.4 MB; before verification renewed its
// snapshot transaction it ran out of the source's lock table.
func TestManyTables(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	n := manyTables(t)
	srcPG, dstPG, src, dst := clusterPair(t, true, "many", "CREATE SCHEMA many")
	testharness.ManyTables(t, src, n)

	c := startWorker(t, t.TempDir())
	s := spec.Spec{
		Name:        "it-many",
		Source:      srcPG.Endpoint("many"),
		Destination: dstPG.Endpoint("target"),
		Objects:     []spec.Object{{Schema: "many"}},
		FullLoad:    spec.FullLoad{Parallelism: 4},
	}
	start := time.Now()
	// A short history limit: the run continues as new once incremental begins, carrying the
	// status of every table.
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 500 * time.Millisecond, HistoryLimit: 200}})
	st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 15*time.Minute)
	t.Logf("%d tables: incremental after %s", n, time.Since(start).Round(time.Second))
	require.Len(t, st.Tables, n)
	for _, ts := range st.Tables {
		require.Equal(t, api.TableDone, ts.State, ts.Source)
		require.Positive(t, ts.RowsCopied, ts.Source)
	}
	require.Len(t, st.Verify, n, "every table verified after the load")
	for _, v := range st.Verify {
		require.True(t, v.Equal, "%+v", v)
	}
	// The initial run's history: far from Temporal's limits (50 MB, 50,000 events).
	d, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	info := d.GetWorkflowExecutionInfo()
	t.Logf("initial run: %d events, %d bytes of history", info.GetHistoryLength(), info.GetHistorySizeBytes())
	require.Less(t, info.GetHistorySizeBytes(), int64(5<<20))
	require.Less(t, info.GetHistoryLength(), int64(2000))
	testharness.Eventually(t, time.Minute, func() error {
		d, err := c.DescribeWorkflowExecution(ctx, run.GetID(), "")
		if err != nil {
			return err
		}
		if d.GetWorkflowExecutionInfo().GetExecution().GetRunId() == run.GetRunID() {
			return fmt.Errorf("the run has not continued as new yet")
		}
		return nil
	})
	require.Len(t, status(t, c, run.GetID()).Tables, n, "the continued run carries every table")

	// Changes to the first, a middle and the last table reach the destination.
	picks := []int{1, n / 2, n}
	for _, i := range picks {
		testharness.Exec(t, src, fmt.Sprintf(`INSERT INTO many.table_with_a_longish_name_%d VALUES (100, 'new'); UPDATE many.table_with_a_longish_name_%d SET v = 'changed' WHERE id = 1`, i, i))
	}
	checks := make([]tableCheck, 0, n)
	for i := 1; i <= n; i++ {
		q := spec.QName{Schema: "many", Name: fmt.Sprintf("table_with_a_longish_name_%d", i)}
		checks = append(checks, tableCheck{src: q, dst: q, srcCols: []string{"id", "v"}, srcKey: []string{"id"}})
	}
	pickChecks := []tableCheck{checks[picks[0]-1], checks[picks[1]-1], checks[picks[2]-1]}
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, pickChecks) })
	require.NoError(t, compareAll(ctx, src, dst, checks))
}
