package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestThrottleHolds measures a throttled full load and a throttled change apply: neither may run
// more than 20% above its limit. Only the upper bound is asserted: a slow machine cannot fail it.
func TestThrottleHolds(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-throttle", srcPG, dstPG)
	s.FullLoad.Parallelism = 2
	const fullRows, applyRows = 8000, 200
	s.Throttle = spec.Throttle{
		Full:        spec.ThrottleFull{RowsPerSecond: fullRows, SourceQPS: 20},
		Incremental: spec.ThrottleIncremental{RowsPerSecond: applyRows},
	}
	run := startTask(t, c, s, nil)

	// The full load's span as the server recorded it (copySpan).
	st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	first, last := copySpan(t, c, run.GetID())
	var rows int64
	for _, ts := range st.Tables {
		rows += ts.RowsCopied
	}
	rate := float64(rows) / last.Sub(first).Seconds()
	t.Logf("full load: %d rows in %s = %.0f rows/s (limit %d)", rows, last.Sub(first), rate, fullRows)
	require.LessOrEqual(t, rate, 1.2*fullRows)
	start := time.Now()
	for i := 0; i < 3*applyRows; i++ {
		_, err := src.Exec(ctx, `UPDATE shop.customers SET note = $1 WHERE id = $2`, fmt.Sprint("throttled ", i), 1+i)
		require.NoError(t, err)
	}
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	applyRate := float64(3*applyRows) / time.Since(start).Seconds()
	t.Logf("apply: %d changes at %.0f changes/s (limit %d)", 3*applyRows, applyRate, applyRows)
	require.LessOrEqual(t, applyRate, 1.2*applyRows)
}

// TestThrottleMBPerSecond loads about 11 MB with throttle.full.mb_per_second at 2: the load may
// not run more than 20% above the limit. (It runs at ~1.9 MB/s here; the lower side is not
// asserted, as a loaded machine adds fixed costs to the phase.)
func TestThrottleMBPerSecond(t *testing.T) {
	parallel(t)
	srcPG, dstPG, src, _ := shopPair(t, false)
	testharness.Exec(t, src, `CREATE TABLE shop.filler (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO shop.filler SELECT i, repeat(md5(i::text), 12) FROM generate_series(1, 20000) i;`)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-throttle-mb", srcPG, dstPG)
	off := false
	s.Sync.Incremental = &off
	s.Verify.Mode = spec.VerifyNone
	s.Objects[0].Tables = append(s.Objects[0].Tables, spec.Table{Name: "filler"})
	const limitMB = 2
	s.Throttle.Full.MBPerSecond = limitMB
	// filler and orders in one chunk each, beside a batch of the small tables: the two large
	// chunks take the whole limit once the batch is done.
	s.FullLoad.ChunkMB = 64
	run := startTask(t, c, s, nil)
	require.NoError(t, run.Get(context.Background(), nil))
	st := status(t, c, run.GetID())
	// The load's span as the server recorded it: from the first copy activity's start to the
	// last one's completion (polling the status would see the phase late on a loaded machine).
	first, last := copySpan(t, c, run.GetID())
	elapsed := last.Sub(first)
	var bytes int64
	for _, ts := range st.Tables {
		bytes += ts.BytesCopied
	}
	rate := float64(bytes) / (1 << 20) / elapsed.Seconds()
	t.Logf("full load: %.1f MB in %s = %.2f MB/s (limit %d)", float64(bytes)/(1<<20), elapsed.Round(time.Millisecond), rate, limitMB)
	require.Greater(t, bytes, int64(6<<20))
	require.LessOrEqual(t, rate, 1.2*limitMB)
}

// copySpan is the time from the first copy activity's start to the last one's completion in the
// workflow's history.
func copySpan(t *testing.T, c client.Client, id string) (first, last time.Time) {
	t.Helper()
	copies := map[int64]bool{} // scheduled event ids of copy activities
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			switch ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName() {
			case api.ActivityCopyChunk, api.ActivityCopyChunks, api.ActivityCopyChunksAndBuild:
				copies[ev.GetEventId()] = true
			}
		case enums.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			if copies[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] && (first.IsZero() || at.Before(first)) {
				first = at
			}
		case enums.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			if copies[ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()] && at.After(last) {
				last = at
			}
		}
	}
	require.False(t, first.IsZero() || last.IsZero(), "no copy activity in the history")
	return first, last
}
