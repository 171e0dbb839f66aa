package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// TestThrottleHolds measures a throttled full load and a throttled change apply: neither may run
// more than 20% above its limit. Only the upper bound is asserted: a slow machine cannot fail it.
func TestThrottleHolds(t *testing.T) {
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

	// The full load phase, seen from the status query.
	var loadStart, loadEnd time.Time
	var st api.Status
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) && loadEnd.IsZero() {
		st = status(t, c, run.GetID())
		switch st.Phase {
		case api.PhasePrechecking, api.PhaseSchema:
		case api.PhaseFullLoad:
			if loadStart.IsZero() {
				loadStart = time.Now()
			}
		default:
			loadEnd = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.False(t, loadStart.IsZero() || loadEnd.IsZero(), "full load not observed: %+v", st)
	var rows int64
	for _, ts := range st.Tables {
		rows += ts.RowsCopied
	}
	rate := float64(rows) / loadEnd.Sub(loadStart).Seconds()
	t.Logf("full load: %d rows in %s = %.0f rows/s (limit %d)", rows, loadEnd.Sub(loadStart), rate, fullRows)
	require.LessOrEqual(t, rate, 1.2*fullRows)

	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	start := time.Now()
	for i := 0; i < 3*applyRows; i++ {
		_, err := src.Exec(ctx, `UPDATE shop.customers SET note = $1 WHERE id = $2`, fmt.Sprint("throttled ", i), 1+i)
		require.NoError(t, err)
	}
	eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	applyRate := float64(3*applyRows) / time.Since(start).Seconds()
	t.Logf("apply: %d changes at %.0f changes/s (limit %d)", 3*applyRows, applyRate, applyRows)
	require.LessOrEqual(t, applyRate, 1.2*applyRows)
}

// TestThrottleMBPerSecond loads about 11 MB with throttle.full.mb_per_second at 2: the load may
// not run more than 20% above the limit. (It runs at ~1.9 MB/s here; the lower side is not
// asserted, as a loaded machine adds fixed costs to the phase.)
func TestThrottleMBPerSecond(t *testing.T) {
	srcPG, dstPG, src, _ := shopPair(t, false)
	mustExec(t, src, `CREATE TABLE shop.filler (id int PRIMARY KEY, v text NOT NULL);
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
	var loadStart time.Time
	var st api.Status
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st = status(t, c, run.GetID())
		if st.Phase == api.PhaseFullLoad && loadStart.IsZero() {
			loadStart = time.Now()
		}
		if !loadStart.IsZero() && st.Phase != api.PhaseFullLoad {
			break
		}
	}
	elapsed := time.Since(loadStart)
	require.False(t, loadStart.IsZero(), "full load not observed: %+v", st)
	var bytes int64
	for _, ts := range st.Tables {
		bytes += ts.BytesCopied
	}
	rate := float64(bytes) / (1 << 20) / elapsed.Seconds()
	t.Logf("full load: %.1f MB in %s = %.2f MB/s (limit %d)", float64(bytes)/(1<<20), elapsed.Round(time.Millisecond), rate, limitMB)
	require.Greater(t, bytes, int64(6<<20))
	require.LessOrEqual(t, rate, 1.2*limitMB)
}
