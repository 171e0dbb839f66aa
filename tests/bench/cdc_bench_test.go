// Package bench holds Skein's benchmarks (make bench-cdc): each measures Skein and, in the same
// run on the same machine, the tool users would pick instead, and prints the ratio. They are not
// tests: make test compiles them and runs none.
package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// pgbench-like tables: accounts updated by key, history appended to.
const benchSchema = `
CREATE TABLE public.accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE public.history (hid bigint PRIMARY KEY, aid int, delta int, mtime timestamptz, filler char(22));
INSERT INTO public.accounts SELECT i, 1 + i / 100000, 0, '' FROM generate_series(1, 200000) i;
`

// backlog makes changes on the source: transactions of 40 updates and 10 inserts each.
const backlog = `
DO $$
BEGIN
  FOR t IN 1..%d LOOP
    UPDATE public.accounts SET abalance = abalance + 1 WHERE aid BETWEEN (t * 40) %% 199000 + 1 AND (t * 40) %% 199000 + 40;
    INSERT INTO public.history SELECT t * 10 + k, (t * 40) %% 199000 + k, 1, now(), '' FROM generate_series(0, 9) k;
    COMMIT;
  END LOOP;
END $$`

// start starts a cluster of the change benchmarks with the benchmark's tables. By default its
// commits are not flushed to disk (fsync = off, as the test clusters); BENCH_DURABLE=1 runs it as
// a production server does (fsync, synchronous_commit and full_page_writes on), where a
// synchronous commit costs a WAL flush.
// durable reports BENCH_DURABLE=1 (see start).
func durable() bool { return os.Getenv("BENCH_DURABLE") == "1" }

// conditions says how the clusters commit and on how many scheduler threads Skein's apply (this
// process) runs: GOMAXPROCS, the machine's cores unless set (see README, Running in production).
func conditions() string {
	commits := "clusters with fsync off"
	if durable() {
		commits = "clusters with fsync and synchronous_commit on (BENCH_DURABLE=1)"
	}
	return fmt.Sprintf("%s, Skein's process on GOMAXPROCS=%d", commits, runtime.GOMAXPROCS(0))
}

func start(b *testing.B, logical bool, settings ...string) (*testharness.Postgres, *pgx.Conn) {
	b.Helper()
	ctx := context.Background()
	base := []string{"shared_buffers = 512MB", "max_wal_size = 8GB", "synchronous_commit = off"}
	if durable() {
		base = []string{"shared_buffers = 512MB", "max_wal_size = 8GB", "fsync = on", "synchronous_commit = on", "full_page_writes = on"}
	}
	pg, err := testharness.StartPostgres(ctx, testharness.PostgresOptions{Logical: logical,
		Settings: append(base, settings...)})
	require.NoError(b, err)
	b.Cleanup(func() { _ = pg.Stop() })
	conn, err := pg.Connect(ctx, "postgres")
	require.NoError(b, err)
	b.Cleanup(func() { conn.Close(ctx) })
	_, err = conn.Exec(ctx, benchSchema)
	require.NoError(b, err)
	return pg, conn
}

// BenchmarkCDCCatchUp applies a backlog of changes (BENCH_CDC_TRANSACTIONS transactions of 50
// changes, default 20,000: a million changes) with Skein's change apply, once per lane count in
// BENCH_CDC_LANES (default 1,2,4), and with a native subscription, alternately, BENCH_RUNS times;
// every apply starts from a slot made before the backlog, into a fresh cluster. It prints, per
// way of applying, the median and range of changes per second and of the ratio to the native
// subscription of the same run, and the CPU per change of each process.
func BenchmarkCDCCatchUp(b *testing.B) {
	ctx := context.Background()
	txs := envInt("BENCH_CDC_TRANSACTIONS", 20000)
	runs := benchRuns()
	var laneCounts []int
	for _, f := range strings.Split(envString("BENCH_CDC_LANES", "1,2,4"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		require.NoError(b, err, "BENCH_CDC_LANES")
		laneCounts = append(laneCounts, n)
	}
	srcPG, src := start(b, true)

	s := spec.Spec{Name: "bench", Source: srcPG.Endpoint("postgres"), Objects: []spec.Object{{Schema: "public"}}}
	s.ApplyDefaults()
	tables := []spec.TableMap{
		{Source: spec.QName{Schema: "public", Name: "accounts"}, Dest: spec.QName{Schema: "public", Name: "accounts"}, Operations: spec.AllOperations},
		{Source: spec.QName{Schema: "public", Name: "history"}, Dest: spec.QName{Schema: "public", Name: "history"}, Operations: spec.AllOperations},
	}
	require.NoError(b, source.EnsurePublication(ctx, src, s.SlotName(), source.Owner(s.Name), tables))
	_, err := src.Exec(ctx, `CREATE PUBLICATION native_pub FOR TABLE public.accounts, public.history`)
	require.NoError(b, err)
	// A slot for every apply of every run, made before the backlog: each applies all of it.
	open := dbconn.Opener{}
	slot := func(run, lanes int) string { return fmt.Sprintf("%s_%d_%d", s.SlotName(), run, lanes) }
	nativeSlot := func(run int) string { return fmt.Sprintf("native_%d", run) }
	for r := range runs {
		for _, n := range laneCounts {
			repl, err := open.ConnectReplication(ctx, s.Source)
			require.NoError(b, err)
			_, err = source.CreateSlot(ctx, repl, slot(r, n))
			require.NoError(b, err)
			repl.Close(ctx)
		}
		_, err = src.Exec(ctx, `SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')`, nativeSlot(r))
		require.NoError(b, err)
	}

	began := time.Now()
	from, err := source.CurrentWAL(ctx, src)
	require.NoError(b, err)
	_, err = src.Exec(ctx, fmt.Sprintf(backlog, txs))
	require.NoError(b, err)
	var target pglogrepl.LSN
	target, err = source.CurrentWAL(ctx, src)
	require.NoError(b, err)
	changes := float64(txs * 50)
	b.Logf("backlog: %d transactions, %.0f changes, %s of WAL, made in %s", txs, changes, byteSize(int64(target-from)), time.Since(began).Round(time.Millisecond))
	// What every destination must hold afterwards: the source's tables.
	sums := func(conn *pgx.Conn) (a, h int64) {
		require.NoError(b, conn.QueryRow(ctx, `SELECT sum(abalance), (SELECT count(*) FROM public.history) FROM public.accounts`).Scan(&a, &h))
		return a, h
	}
	wantA, wantH := sums(src)
	check := func(pg *testharness.Postgres, what string) {
		conn, err := pg.Connect(ctx, "postgres")
		require.NoError(b, err)
		defer conn.Close(ctx)
		a, h := sums(conn)
		require.Equal(b, wantA, a, "accounts differ (%s)", what)
		require.Equal(b, wantH, h, "history differs (%s)", what)
	}

	// BENCH_PROFILE=1 loads pg_stat_statements into the destinations and prints what Skein's
	// statements cost there (it slows them: leave it off for the figures).
	profile := os.Getenv("BENCH_PROFILE") == "1"
	var destSettings []string
	if profile {
		destSettings = []string{"shared_preload_libraries = 'pg_stat_statements'", "pg_stat_statements.track_planning = on"}
	}
	walNow := func(conn *pgx.Conn) pglogrepl.LSN {
		var lsn pglogrepl.LSN
		require.NoError(b, conn.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_insert_lsn()`).Scan(&lsn))
		return lsn
	}

	b.ResetTimer()
	rate := map[int]spread{}  // changes/s per lane count
	ratio := map[int]spread{} // to the native subscription of the same run
	destCPU := map[int]spread{}
	selfCPUs := map[int]spread{}
	srcCPU := map[int]spread{}  // the source cluster's (its walsender's) CPU per change
	walPer := map[int]spread{}  // destination WAL bytes per change
	peakRSS := map[int]spread{} // MiB, this process (the benchmark with Skein's apply in it)
	var nativeRate, nativeCPU, nativeSrcCPU, nativeWAL spread
	var lastShares, lastProfile []string
	for r := range runs {
		fmt.Printf("run %d/%d: load average %s before it\n", r+1, runs, loadAverage())
		lastShares = lastShares[:0]
		took := map[int]time.Duration{}
		for _, n := range laneCounts {
			destPG, destConn := start(b, false, destSettings...)
			if profile {
				_, err := destConn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
				require.NoError(b, err)
			}
			dest := destPG.Endpoint("postgres")
			walFrom := walNow(destConn)
			repl, err := open.ConnectReplication(ctx, s.Source)
			require.NoError(b, err)
			applyConn, err := open.ConnectDestination(ctx, dest)
			require.NoError(b, err)
			t0 := time.Now()
			cpu := cpuShares(b, map[string]*testharness.Postgres{"destination": destPG, "source": srcPG})
			rss := rssSampler(b)
			require.NoError(b, cdc.Stream(ctx, repl, applyConn, cdc.StreamOptions{Task: "bench", Slot: slot(r, n), Publication: s.SlotName(),
				Tables: tables, StopAt: target, StatusInterval: time.Second, Lanes: n, BatchChanges: envInt("BENCH_CDC_BATCH_CHANGES", 0),
				OpenLane: func(ctx context.Context) (*pgx.Conn, error) { return open.ConnectDestination(ctx, dest) }}))
			took[n] = time.Since(t0)
			use := cpu()
			peakRSS[n] = append(peakRSS[n], rss())
			walPer[n] = append(walPer[n], float64(walNow(destConn)-walFrom)/changes)
			if profile && r == runs-1 {
				lastProfile = append(lastProfile, statementProfile(b, destConn, n)...)
			}
			repl.Close(ctx)
			applyConn.Close(ctx)
			check(destPG, fmt.Sprintf("%d lanes", n))
			_ = destPG.Stop()
			rate[n] = append(rate[n], changes/took[n].Seconds())
			destCPU[n] = append(destCPU[n], use.perChange("destination", changes))
			selfCPUs[n] = append(selfCPUs[n], use.perChange("this process", changes))
			srcCPU[n] = append(srcCPU[n], use.perChange("source", changes))
			lastShares = append(lastShares, fmt.Sprintf("skein, %d lane(s): %s", n, use))
		}

		// Native logical replication: a subscription on its own slot applies the same backlog.
		nativePG, native := start(b, false, destSettings...)
		nativeFrom := walNow(native)
		_, err = native.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=%d user=postgres dbname=postgres'
PUBLICATION native_pub WITH (copy_data = false, create_slot = false, slot_name = '%s', enabled = false)`, srcPG.Port, nativeSlot(r)))
		require.NoError(b, err)
		t0 := time.Now()
		cpu := cpuShares(b, map[string]*testharness.Postgres{"subscriber": nativePG, "source": srcPG})
		_, err = native.Exec(ctx, `ALTER SUBSCRIPTION native_sub ENABLE`)
		require.NoError(b, err)
		for {
			var flushed *string
			require.NoError(b, src.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, nativeSlot(r)).Scan(&flushed))
			if flushed != nil {
				if l, err := pglogrepl.ParseLSN(*flushed); err == nil && l >= target {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		nat := time.Since(t0)
		use := cpu()
		nativeWAL = append(nativeWAL, float64(walNow(native)-nativeFrom)/changes)
		if profile && r == runs-1 {
			var upd, hot int64
			require.NoError(b, native.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'public.accounts'::regclass`).Scan(&upd, &hot))
			lastProfile = append(lastProfile, fmt.Sprintf("  native subscriber: accounts %d updates, %d of them HOT", upd, hot))
		}
		check(nativePG, "native subscription")
		_, err = native.Exec(ctx, `ALTER SUBSCRIPTION native_sub DISABLE; ALTER SUBSCRIPTION native_sub SET (slot_name = NONE); DROP SUBSCRIPTION native_sub`)
		require.NoError(b, err)
		_ = nativePG.Stop()
		nr := changes / nat.Seconds()
		nativeRate = append(nativeRate, nr)
		nativeCPU = append(nativeCPU, use.perChange("subscriber", changes))
		nativeSrcCPU = append(nativeSrcCPU, use.perChange("source", changes))
		lastShares = append(lastShares, "native: "+use.String())
		for _, n := range laneCounts {
			ratio[n] = append(ratio[n], changes/took[n].Seconds()/nr)
		}
	}
	b.StopTimer()

	b.ReportMetric(nativeRate.median(), "native_changes/s")
	fmt.Printf("\ncatch-up of %.0f changes (%d transactions), medians and ranges of %d alternating runs, %s\n", changes, txs, runs, conditions())
	for _, n := range laneCounts {
		b.ReportMetric(ratio[n].median(), fmt.Sprintf("skein%d/native", n))
		fmt.Printf("  skein apply, %d lane(s)  %s changes/s  %s native\n    destination %s µs CPU and %s bytes of WAL per change, skein %s µs CPU per change, source %s µs\n", n,
			rate[n].format("%.0f"), ratio[n].format("%.2fx"), destCPU[n].format("%.1f"), walPer[n].format("%.0f"), selfCPUs[n].format("%.1f"), srcCPU[n].format("%.1f"))
		fmt.Printf("    peak RSS of the process applying (the benchmark with Skein in it) %s MiB\n", peakRSS[n].format("%.0f"))
	}
	fmt.Printf("  native subscription     %s changes/s\n    subscriber %s µs CPU and %s bytes of WAL per change, source %s µs\n", nativeRate.format("%.0f"), nativeCPU.format("%.1f"), nativeWAL.format("%.0f"), nativeSrcCPU.format("%.1f"))
	// The source's walsender decodes the WAL and sends the changes alone: at its CPU per change it
	// cannot send faster than one change per that many µs, whatever applies them.
	fmt.Printf("  the source's ceiling at its CPU per change (one walsender, one core): %s changes/s with skein's apply (one lane), %s with native's\n",
		ceiling(srcCPU[laneCounts[0]]), ceiling(nativeSrcCPU))
	// Where the CPU went in the last run: a destination near one core is what lanes can spread.
	for _, l := range lastShares {
		fmt.Println("  " + l)
	}
	for _, l := range lastProfile {
		fmt.Println(l)
	}
}

// ceiling is the rate, in changes per second, that one process spending the median of perChange
// µs of CPU per change reaches on a core of its own.
func ceiling(perChange spread) string {
	if m := perChange.median(); m > 0 {
		return fmt.Sprintf("%.0f", 1e6/m)
	}
	return "?"
}

// statementProfile lists the destination statements of an apply by total execution time, with
// their planning and execution time per call (pg_stat_statements).
func statementProfile(b *testing.B, conn *pgx.Conn, lanes int) []string {
	b.Helper()
	rows, err := conn.Query(context.Background(), `SELECT calls, rows, total_plan_time, total_exec_time, shared_blks_hit + shared_blks_read, wal_bytes,
  regexp_replace(left(query, 110), '\s+', ' ', 'g')
FROM pg_stat_statements WHERE query !~* 'pg_stat_statements|pg_current_wal' ORDER BY total_exec_time DESC LIMIT 8`)
	require.NoError(b, err)
	defer rows.Close()
	out := []string{fmt.Sprintf("  destination statements, %d lane(s) (pg_stat_statements, last run): calls, rows, plan and execution ms per call, blocks and WAL bytes per row", lanes)}
	for rows.Next() {
		var calls, nrows, blocks int64
		var plan, exec float64
		var wal pgtype.Numeric
		var q string
		require.NoError(b, rows.Scan(&calls, &nrows, &plan, &exec, &blocks, &wal, &q))
		walBytes, _ := wal.Float64Value()
		per := float64(max(nrows, 1))
		out = append(out, fmt.Sprintf("    %7d %8d  %6.3f %7.3f  %5.1f %6.0f  %s", calls, nrows, plan/float64(max(calls, 1)), exec/float64(max(calls, 1)),
			float64(blocks)/per, walBytes.Float64/per, q))
	}
	require.NoError(b, rows.Err())
	var upd, hot int64
	require.NoError(b, conn.QueryRow(context.Background(), `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'public.accounts'::regclass`).Scan(&upd, &hot))
	out = append(out, fmt.Sprintf("    accounts: %d updates, %d of them HOT (no index entry)", upd, hot))
	return out
}

func byteSize(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
