package integration

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// TestWorkerLimits runs a task with 4 chunks at once on a worker that allows one chunk copy and
// 8 database connections: the source never sees more than one COPY of the task at a time, the
// worker never holds more than 8 connections, and the task still loads and streams every row.
func TestWorkerLimits(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := clusterPair(t, true, "lim", `CREATE SCHEMA lim;
CREATE TABLE lim.a (id int PRIMARY KEY, pad text);
INSERT INTO lim.a SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 40000) i;
CREATE TABLE lim.b (id int PRIMARY KEY, pad text);
INSERT INTO lim.b SELECT i, md5(i::text) FROM generate_series(1, 20000) i;
ANALYZE`)
	budget := dbconn.NewBudget(8)
	c := temporalClient(t)
	w := worker.New(c, api.TaskQueue, activities.WorkerOptions())
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{Open: dbconn.Opener{Budget: budget}, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Client: c, Limits: activities.Limits{ChunkCopies: 1, ApplyRuns: 1}})
	require.NoError(t, w.Start())
	defer w.Stop()

	// A chunk copy is a COPY TO on the source and a COPY FROM on the destination (the throttle
	// slows the second): each side shows at most one at a time.
	srcWatch, err := srcPG.Connect(ctx, "lim")
	require.NoError(t, err)
	defer srcWatch.Close(ctx)
	dstWatch, err := dstPG.Connect(ctx, "target")
	require.NoError(t, err)
	defer dstWatch.Close(ctx)
	var maxCopies, maxConns atomic.Int64
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			for _, conn := range []*pgx.Conn{srcWatch, dstWatch} {
				var n int64
				if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'skein' AND query LIKE 'COPY%' AND state = 'active'`).Scan(&n); err == nil && n > maxCopies.Load() {
					maxCopies.Store(n)
				}
			}
			if n := int64(budget.InUse()); n > maxConns.Load() {
				maxConns.Store(n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	s := spec.Spec{Name: "it-limits", Source: srcPG.Endpoint("lim"), Destination: dstPG.Endpoint("target"),
		Objects:  []spec.Object{{Schema: "lim"}},
		FullLoad: spec.FullLoad{Parallelism: 4, ChunkMB: 1},
		Throttle: spec.Throttle{Full: spec.ThrottleFull{RowsPerSecond: 20000}},
		Verify:   spec.Verify{Mode: spec.VerifyCount}}
	run := startTask(t, c, s, nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	testharness.Exec(t, src, `UPDATE lim.a SET pad = 'streamed' WHERE id % 100 = 0; INSERT INTO lim.b VALUES (20001, 'new')`)
	checks := []tableCheck{tableOf("lim", "a", "lim", "a", "id", "pad"), tableOf("lim", "b", "lim", "b", "id", "pad")}
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, checks) })
	stopWatch()
	<-watched

	require.Equal(t, int64(1), maxCopies.Load(), "one chunk copy at a time on this worker (seen: %d)", maxCopies.Load())
	require.LessOrEqual(t, maxConns.Load(), int64(8), "the connection budget holds")
	require.Positive(t, maxConns.Load())
	st := status(t, c, run.GetID())
	require.Empty(t, st.LastError, "waiting for a slot is not an error")
}
