package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// BenchmarkManyTables syncs a schema of BENCH_TABLES tables (default 10,000, a few rows each)
// with Skein (schema + full load + BENCH_TABLES_STREAM_SECONDS, default 60, of incremental with
// a write to a table every second), and copies it with pg_dump -Fd -j N + pg_restore -j N and
// pgcopydb clone (N = BENCH_FULL_JOBS, default 4), alternately, BENCH_RUNS times. It prints the
// time to a copy (Skein: until incremental), and for Skein the history of the task's first run
// (events, bytes, events per table) and the peak RSS of the process its worker runs in.
func BenchmarkManyTables(b *testing.B) {
	ctx := context.Background()
	n, jobs := envInt("BENCH_TABLES", 10000), envInt("BENCH_FULL_JOBS", 4)
	streamFor := time.Duration(envInt("BENCH_TABLES_STREAM_SECONDS", 60)) * time.Second
	runs := benchRuns()
	bin, err := testharness.BinDir()
	require.NoError(b, err)
	pgcopydb, _ := exec.LookPath("pgcopydb")
	// BENCH_TABLES_TOOLS (comma-separated: pg_dump,pgcopydb) runs some of the anchors only.
	selected := toolSelection("BENCH_TABLES_TOOLS")

	// BENCH_PROFILE=1 loads pg_stat_statements into both servers and prints, after Skein's first
	// run, the statements it sent to each by calls and total time.
	profile := os.Getenv("BENCH_PROFILE") == "1"
	settings := []string{"max_locks_per_transaction = 1024"}
	if profile {
		settings = append(settings, "shared_preload_libraries = 'pg_stat_statements'", "pg_stat_statements.max = 10000")
	}
	srcPG, err := testharness.StartPostgres(ctx, testharness.PostgresOptions{Logical: true, Settings: settings})
	require.NoError(b, err)
	b.Cleanup(func() { _ = srcPG.Stop() })
	dstPG, err := testharness.StartPostgres(ctx, testharness.PostgresOptions{Settings: settings})
	require.NoError(b, err)
	b.Cleanup(func() { _ = dstPG.Stop() })
	require.NoError(b, srcPG.CreateDatabase(ctx, "many"))
	src, err := srcPG.Connect(ctx, "many")
	require.NoError(b, err)
	defer src.Close(ctx)
	began := time.Now()
	testharness.Exec(b, src, "CREATE SCHEMA many")
	testharness.ManyTables(b, src, n)
	b.Logf("%d tables made in %s", n, time.Since(began).Round(time.Second))
	srcURL := srcPG.URL("many")
	sh := shell(b, bin)
	drop := func(db string) {
		admin, err := dstPG.Connect(ctx, "postgres")
		require.NoError(b, err)
		defer admin.Close(ctx)
		_, err = admin.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)")
		require.NoError(b, err)
	}
	resetStatements := func() {}
	if profile {
		resetStatements = func() {
			for _, pg := range []*testharness.Postgres{srcPG, dstPG} {
				conn, err := pg.Connect(ctx, "postgres")
				require.NoError(b, err)
				testharness.Exec(b, conn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
				testharness.Exec(b, conn, "SELECT pg_stat_statements_reset()")
				conn.Close(ctx)
			}
		}
	}
	c, stopTemporal := startSkein(b)
	defer stopTemporal()
	b.ResetTimer()

	times := map[string]spread{}
	var events, historyMB, perTable, peakRSS spread
	fmt.Printf("\n%d tables, %d jobs, %d alternating runs\n", n, jobs, runs)
	for r := range runs {
		fmt.Printf("run %d/%d: load average %s before it\n", r+1, runs, loadAverage())
		// Skein: schema, full load, then a minute of changes.
		db := fmt.Sprintf("skein_%d", r)
		require.NoError(b, dstPG.CreateDatabase(ctx, db))
		s := spec.Spec{Name: fmt.Sprintf("bench-many-%d", r), Source: srcPG.Endpoint("many"), Destination: dstPG.Endpoint(db),
			Objects: []spec.Object{{Schema: "many"}}, FullLoad: spec.FullLoad{Parallelism: jobs}}
		s.ApplyDefaults()
		require.NoError(b, s.Validate())
		if r == 0 {
			resetStatements()
		}
		rss := rssSampler(b)
		t0 := time.Now()
		wf, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: s.Name, TaskQueue: api.TaskQueue}, api.WorkflowName, s, nil)
		require.NoError(b, err)
		waitIncremental(b, c, s.Name, 0)
		took := time.Since(t0)
		for i := 0; time.Since(t0) < took+streamFor; i++ {
			testharness.Exec(b, src, fmt.Sprintf(`UPDATE many.table_with_a_longish_name_%d SET v = 'changed' WHERE id = 1`, 1+(i*997)%n))
			time.Sleep(time.Second)
		}
		if r == 0 {
			printActivities(b, c, s.Name) // where the time to incremental went
			if profile {
				for name, pg := range map[string]*testharness.Postgres{"source": srcPG, "destination": dstPG} {
					conn, err := pg.Connect(ctx, "postgres")
					require.NoError(b, err)
					fmt.Println(strings.Join(callProfile(b, conn, name), "\n"))
					conn.Close(ctx)
				}
			}
		}
		d, err := c.DescribeWorkflowExecution(ctx, wf.GetID(), wf.GetRunID())
		require.NoError(b, err)
		info := d.GetWorkflowExecutionInfo()
		require.NoError(b, c.TerminateWorkflow(ctx, wf.GetID(), "", "benchmark over"))
		peak := rss()
		times["skein"] = append(times["skein"], took.Seconds())
		events = append(events, float64(info.GetHistoryLength()))
		historyMB = append(historyMB, float64(info.GetHistorySizeBytes())/(1<<20))
		perTable = append(perTable, float64(info.GetHistoryLength())/float64(n))
		peakRSS = append(peakRSS, peak)
		fmt.Printf("  skein      %8s to incremental; first run's history %d events, %.1f MiB; peak RSS %.0f MiB\n",
			took.Round(100*time.Millisecond), info.GetHistoryLength(), float64(info.GetHistorySizeBytes())/(1<<20), peak)
		srcAdmin, err := srcPG.Connect(ctx, "many")
		require.NoError(b, err)
		_, _ = srcAdmin.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE NOT active`)
		srcAdmin.Close(ctx)
		drop(db)

		if selected("pg_dump") {
			// pg_dump -Fd -j N | pg_restore -j N.
			db = fmt.Sprintf("pg_dump_%d", r)
			require.NoError(b, dstPG.CreateDatabase(ctx, db))
			dir := filepath.Join(b.TempDir(), "dump")
			t0 = time.Now()
			sh(fmt.Sprintf("pg_dump -Fd -j %d -f %s '%s' && pg_restore -j %d --no-owner -d '%s' %s", jobs, dir, srcURL, jobs, dstPG.URL(db), dir))
			took = time.Since(t0)
			times["pg_dump"] = append(times["pg_dump"], took.Seconds())
			fmt.Printf("  pg_dump    %8s\n", took.Round(100*time.Millisecond))
			drop(db)
		}

		if pgcopydb != "" && selected("pgcopydb") {
			db = fmt.Sprintf("pgcopydb_%d", r)
			require.NoError(b, dstPG.CreateDatabase(ctx, db))
			t0 = time.Now()
			// Bounded (BENCH_TABLES_PGCOPYDB_MINUTES, default 20): a copy not done by then is
			// reported as such, not waited for.
			limit := time.Duration(envInt("BENCH_TABLES_PGCOPYDB_MINUTES", 20)) * time.Minute
			done := shellWithin(bin, limit, fmt.Sprintf("%s clone --source '%s' --target '%s' --table-jobs %d --index-jobs %d --dir %s --no-owner --no-acl",
				pgcopydb, srcURL, dstPG.URL(db), jobs, jobs, b.TempDir()))
			took = time.Since(t0)
			if done != nil {
				fmt.Printf("  pgcopydb   not done after %s (%v): left out of the figures\n", took.Round(time.Second), done)
			} else {
				times["pgcopydb"] = append(times["pgcopydb"], took.Seconds())
				fmt.Printf("  pgcopydb   %8s\n", took.Round(100*time.Millisecond))
			}
			drop(db)
		}
	}
	b.StopTimer()

	fmt.Printf("\n%d tables, medians and ranges of %d alternating runs\n", n, runs)
	for _, name := range []string{"skein", "pg_dump", "pgcopydb"} {
		if t, ok := times[name]; ok {
			fmt.Printf("  %-9s %s s", name, t.format("%.1f"))
			if name != "skein" {
				var ratio spread
				for i := range t {
					ratio = append(ratio, times["skein"][i]/t[i])
				}
				fmt.Printf("  skein / %s %s", name, ratio.format("%.2fx"))
			}
			fmt.Println()
		}
	}
	fmt.Printf("  skein's first run: %s events (%s per table), %s MiB of history; peak RSS %s MiB\n",
		events.format("%.0f"), perTable.format("%.2f"), historyMB.format("%.1f"), peakRSS.format("%.0f"))
	if pgcopydb == "" {
		fmt.Println("  pgcopydb not installed (apt-get install pgcopydb): left out")
	}
	b.ReportMetric(times["skein"].median(), "skein_s")
}

// callProfile lists the statements a server ran, by calls (pg_stat_statements): where a task of
// many small tables spends its round trips.
func callProfile(b *testing.B, conn *pgx.Conn, server string) []string {
	b.Helper()
	ctx := context.Background()
	var calls int64
	var exec float64
	require.NoError(b, conn.QueryRow(ctx, `SELECT sum(calls)::bigint, sum(total_exec_time) FROM pg_stat_statements`).Scan(&calls, &exec))
	out := []string{fmt.Sprintf("  %s: %d statements, %.1f s executing; the most called (calls, ms in all, statement):", server, calls, exec/1000)}
	rows, err := conn.Query(ctx, `SELECT calls, total_exec_time, regexp_replace(left(query, 120), '\s+', ' ', 'g')
FROM pg_stat_statements ORDER BY calls DESC, total_exec_time DESC LIMIT 25`)
	require.NoError(b, err)
	defer rows.Close()
	for rows.Next() {
		var n int64
		var ms float64
		var q string
		require.NoError(b, rows.Scan(&n, &ms, &q))
		out = append(out, fmt.Sprintf("    %7d %9.0f  %s", n, ms, q))
	}
	require.NoError(b, rows.Err())
	return out
}
