package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// verifyTamper changes the destination behind the task's back before each verification:
// accounts rows the workload may update too, and history rows (which it does not write)
// deleted and added.
const verifyTamper = `
UPDATE public.accounts SET abalance = -999 WHERE aid %% 4000 = %d;
DELETE FROM public.history WHERE hid %% 100 = %d;
INSERT INTO public.history SELECT 1000000 + %d * 100 + i, 1, 0, now(), 'extra' FROM generate_series(1, 10) i;`

// sourceReads are the source's cumulative figures a verification adds to: rows read from the
// task's tables, and the calls, rows and buffers of statements other than the workload's.
type sourceReads struct {
	tableRows, calls, rows, blocks int64
}

func readSource(b *testing.B, src *pgx.Conn) sourceReads {
	b.Helper()
	ctx := context.Background()
	time.Sleep(1100 * time.Millisecond) // table statistics reach the shared view within a second
	var r sourceReads
	require.NoError(b, src.QueryRow(ctx, `SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0)::bigint
FROM pg_stat_user_tables WHERE relname IN ('accounts', 'history')`).Scan(&r.tableRows))
	require.NoError(b, src.QueryRow(ctx, `SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(rows), 0)::bigint,
  coalesce(sum(shared_blks_hit + shared_blks_read), 0)::bigint
FROM pg_stat_statements WHERE query !~* 'lagprobe|abalance = abalance|pg_stat_statements|pg_stat_user_tables|^\s*(BEGIN|END|COMMIT)'`).Scan(&r.calls, &r.rows, &r.blocks))
	return r
}

func (r sourceReads) minus(o sourceReads) sourceReads {
	return sourceReads{r.tableRows - o.tableRows, r.calls - o.calls, r.rows - o.rows, r.blocks - o.blocks}
}

// BenchmarkVerifyLag measures what a verification with repair costs a streaming task: a task
// (through the Temporal dev server and a worker, with alerts.latency_seconds = 1) applies a
// pgbench workload at BENCH_LAG_TPS (1,000) transactions/s for BENCH_LAG_SECONDS (30), and per
// run, alternately, once alone and once with `verify --repair` started 3 s into the window
// after the destination was tampered with. It prints the lag (p50, p99, max) of both windows,
// the latency alerts raised, the verification's time and its repair's hold on the stream, and
// what it cost the source: rows read from the task's tables, and the calls, rows and buffers
// of its statements (pg_stat_statements, the workload's own left out).
func BenchmarkVerifyLag(b *testing.B) {
	ctx := context.Background()
	tps, secs := envInt("BENCH_LAG_TPS", 1000), envInt("BENCH_LAG_SECONDS", 30)
	runs := benchRuns()
	srcPG, src := start(b, true, "shared_preload_libraries = 'pg_stat_statements'")
	dstPG, err := testharness.StartPostgres(ctx, testharness.PostgresOptions{
		Settings: []string{"shared_buffers = 512MB", "max_wal_size = 8GB", "synchronous_commit = off"}})
	require.NoError(b, err)
	b.Cleanup(func() { _ = dstPG.Stop() })
	dst, err := dstPG.Connect(ctx, "postgres") // the database observe watches
	require.NoError(b, err)
	defer dst.Close(ctx)
	testharness.Exec(b, src, lagProbe+`;
CREATE EXTENSION pg_stat_statements;
INSERT INTO public.history SELECT i, i, 1, now(), '' FROM generate_series(1, 20000) i;`)

	var latencyAlerts atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev api.AlertEvent
		if json.NewDecoder(r.Body).Decode(&ev) == nil && ev.Kind == api.AlertLatency {
			latencyAlerts.Add(1)
			fmt.Printf("  %s latency alert: %s\n", time.Now().Format("15:04:05.000"), ev.Message)
		}
	}))
	defer hook.Close()
	c, stopSkein := startSkein(b)
	defer stopSkein()
	s := spec.Spec{Name: "bench-verify", Source: srcPG.Endpoint("postgres"), Destination: dstPG.Endpoint("postgres"),
		Objects: []spec.Object{{Schema: "public", Tables: []spec.Table{{Name: "accounts"}, {Name: "history"}, {Name: "lagprobe"}}}},
		Alerts:  spec.Alerts{LatencySeconds: 1, WebhookURL: hook.URL}}
	s.ApplyDefaults()
	require.NoError(b, s.Validate())
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: s.Name, TaskQueue: api.TaskQueue}, api.WorkflowName, s, nil)
	require.NoError(b, err)
	defer func() { _ = c.TerminateWorkflow(ctx, s.Name, "", "benchmark over") }()
	waitIncremental(b, c, s.Name, 5*time.Minute)
	script := writeLagScript(b)
	// window runs the workload for secs seconds while the observer watches the destination,
	// with during (if not nil) started 3 s into it; it returns the lag and what the source
	// served besides the workload.
	window := func(during func()) (lagStats, sourceReads) {
		before := readSource(b, src)
		from := lastProbe(b, src)
		fmt.Printf("  %s window starts\n", time.Now().Format("15:04:05.000"))
		obs := observe(b, dstPG, from)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if during != nil {
				time.Sleep(3 * time.Second)
				during()
			}
		}()
		pgbench(b, srcPG, script, tps, secs)
		fmt.Printf("  %s load ends\n", time.Now().Format("15:04:05.000"))
		<-done
		return obs.lag(b, src, from), readSource(b, src).minus(before)
	}
	b.ResetTimer()

	var aloneP99, verifyP99, verifyMax, ratioP99, took, hold, alerts spread
	for r := range runs {
		fmt.Printf("run %d/%d: load average %s before it\n", r+1, runs, loadAverage())
		alerted := latencyAlerts.Load()
		alone, aloneReads := window(nil)

		testharness.Exec(b, dst, fmt.Sprintf(verifyTamper, r, r, r))
		var rep api.VerifyReport
		var verifyTook time.Duration
		with, withReads := window(func() {
			t0 := time.Now()
			fmt.Printf("  %s verify --repair starts\n", t0.Format("15:04:05.000"))
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: api.VerifyWorkflowID(s.Name), TaskQueue: api.TaskQueue},
				api.VerifyWorkflowName, api.VerifyRequest{Task: s.Name, Repair: true})
			require.NoError(b, err)
			require.NoError(b, run.Get(ctx, &rep))
			verifyTook = time.Since(t0)
		})
		require.False(b, rep.Equal, "the tampering was found")
		require.True(b, rep.Repaired, "%+v", rep)
		v, err := c.QueryWorkflow(ctx, s.Name, "", api.QueryStatus)
		require.NoError(b, err)
		var st api.Status
		require.NoError(b, v.Get(&st))
		require.NotNil(b, st.LastRepair)
		if verifyTook > time.Duration(secs-3)*time.Second {
			fmt.Printf("  (the verification outlasted the load: raise BENCH_LAG_SECONDS)\n")
		}
		fmt.Printf("  alone              %s\n  with verify+repair %s\n", alone, with)
		for _, tr := range st.LastRepair.Tables {
			fmt.Printf("  repaired %s: %d rows deleted, %d written\n", tr.Table, tr.Deleted, tr.Inserted)
		}
		fmt.Printf("  verification %.1f s; repair: barrier %.3f s, catch-up %.3f s, writes %.3f s; latency alerts %d\n",
			verifyTook.Seconds(), st.LastRepair.BarrierSeconds, st.LastRepair.CatchUpSeconds, st.LastRepair.WriteSeconds, latencyAlerts.Load()-alerted)
		fmt.Printf("  source beyond the workload: alone %d rows read, %d statements; with verification %d rows read, %d statements returning %d rows, %d buffers\n",
			aloneReads.tableRows, aloneReads.calls, withReads.tableRows, withReads.calls, withReads.rows, withReads.blocks)
		aloneP99, verifyP99, verifyMax = append(aloneP99, ms(alone.p99)), append(verifyP99, ms(with.p99)), append(verifyMax, ms(with.max))
		ratioP99 = append(ratioP99, ms(with.p99)/ms(alone.p99))
		took, hold = append(took, verifyTook.Seconds()), append(hold, st.LastRepair.BarrierSeconds+st.LastRepair.WriteSeconds)
		alerts = append(alerts, float64(latencyAlerts.Load()-alerted))
	}
	b.StopTimer()

	b.ReportMetric(verifyMax.median(), "verify_max_lag_ms")
	fmt.Printf("\nverification with repair while streaming %d transactions/s (accounts 200,000 rows, history 20,000), medians and ranges of %d alternating runs\n"+
		"  lag p99 alone %s ms, with verification %s ms (%s); max with verification %s ms against alerts.latency_seconds 1\n"+
		"  verification %s s; the repair's hold on the stream (barrier + writes) %s s; latency alerts %s\n",
		tps, runs, aloneP99.format("%.1f"), verifyP99.format("%.1f"), ratioP99.format("%.2fx"), verifyMax.format("%.0f"),
		took.format("%.1f"), hold.format("%.3f"), alerts.format("%.0f"))
}
