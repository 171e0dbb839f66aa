// Package bench holds Skein's benchmarks (make bench-cdc): each measures Skein and, in the same
// run on the same machine, the tool users would pick instead, and prints the ratio. They are not
// tests: make test compiles them and runs none.
package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
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

func start(b *testing.B, logical bool) (*testharness.Postgres, *pgx.Conn) {
	b.Helper()
	ctx := context.Background()
	pg, err := testharness.StartPostgres(ctx, testharness.PostgresOptions{Logical: logical,
		Settings: []string{"shared_buffers = 512MB", "max_wal_size = 8GB", "synchronous_commit = off"}})
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
// BENCH_CDC_LANES (default 1,2,4; each into a cluster of its own), and with a native subscription
// on another cluster, all from slots created before the backlog, and prints changes per second,
// the ratios and where the CPU went.
func BenchmarkCDCCatchUp(b *testing.B) {
	ctx := context.Background()
	txs := envInt("BENCH_CDC_TRANSACTIONS", 20000)
	var laneCounts []int
	for _, f := range strings.Split(envString("BENCH_CDC_LANES", "1,2,4"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		require.NoError(b, err, "BENCH_CDC_LANES")
		laneCounts = append(laneCounts, n)
	}
	srcPG, src := start(b, true)
	nativePG, native := start(b, false)
	dests := map[int]*testharness.Postgres{}
	for _, n := range laneCounts {
		dests[n], _ = start(b, false)
	}

	s := spec.Spec{Name: "bench", Source: srcPG.Endpoint("postgres"), Objects: []spec.Object{{Schema: "public"}}}
	s.ApplyDefaults()
	tables := []spec.TableMap{
		{Source: spec.QName{Schema: "public", Name: "accounts"}, Dest: spec.QName{Schema: "public", Name: "accounts"}, Operations: spec.AllOperations},
		{Source: spec.QName{Schema: "public", Name: "history"}, Dest: spec.QName{Schema: "public", Name: "history"}, Operations: spec.AllOperations},
	}
	require.NoError(b, source.EnsurePublication(ctx, src, s.SlotName(), source.Owner(s.Name), tables))
	open := dbconn.Opener{}
	slot := func(lanes int) string { return fmt.Sprintf("%s_%d", s.SlotName(), lanes) }
	for _, n := range laneCounts {
		repl, err := open.ConnectReplication(ctx, s.Source)
		require.NoError(b, err)
		_, err = source.CreateSlot(ctx, repl, slot(n))
		require.NoError(b, err)
		repl.Close(ctx)
	}
	_, err := src.Exec(ctx, `CREATE PUBLICATION native_pub FOR TABLE public.accounts, public.history`)
	require.NoError(b, err)
	_, err = native.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=%d user=postgres dbname=postgres'
PUBLICATION native_pub WITH (copy_data = false, enabled = false)`, srcPG.Port))
	require.NoError(b, err)

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

	b.ResetTimer()
	// Skein: the apply engine of the incremental phase, from its slot, until it has passed target.
	took := map[int]time.Duration{}
	shares := map[int]string{}
	for _, n := range laneCounts {
		dest := dests[n].Endpoint("postgres")
		repl, err := open.ConnectReplication(ctx, s.Source)
		require.NoError(b, err)
		applyConn, err := open.ConnectDestination(ctx, dest)
		require.NoError(b, err)
		t0 := time.Now()
		cpu := cpuShares(b, map[string]*testharness.Postgres{"destination": dests[n], "source": srcPG})
		require.NoError(b, cdc.Stream(ctx, repl, applyConn, cdc.StreamOptions{Task: "bench", Slot: slot(n), Publication: s.SlotName(),
			Tables: tables, StopAt: target, StatusInterval: time.Second, Lanes: n,
			OpenLane: func(ctx context.Context) (*pgx.Conn, error) { return open.ConnectDestination(ctx, dest) }}))
		took[n] = time.Since(t0)
		shares[n] = cpu()
		repl.Close(ctx)
		applyConn.Close(ctx)
	}

	// Native logical replication: the subscription applies the same backlog.
	t0 := time.Now()
	nativeCPU := cpuShares(b, map[string]*testharness.Postgres{"subscriber": nativePG, "source": srcPG})
	_, err = native.Exec(ctx, `ALTER SUBSCRIPTION native_sub ENABLE`)
	require.NoError(b, err)
	for {
		var flushed *string
		require.NoError(b, src.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'native_sub'`).Scan(&flushed))
		if flushed != nil {
			if l, err := pglogrepl.ParseLSN(*flushed); err == nil && l >= target {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	nat := time.Since(t0)
	nativeShares := nativeCPU()
	b.StopTimer()

	// Every destination holds the same data as the subscriber.
	sums := func(conn *pgx.Conn) (a, h int64) {
		require.NoError(b, conn.QueryRow(ctx, `SELECT sum(abalance), (SELECT count(*) FROM public.history) FROM public.accounts`).Scan(&a, &h))
		return a, h
	}
	a2, h2 := sums(native)
	for _, n := range laneCounts {
		conn, err := dests[n].Connect(ctx, "postgres")
		require.NoError(b, err)
		a1, h1 := sums(conn)
		conn.Close(ctx)
		require.Equal(b, a2, a1, "accounts differ (%d lanes)", n)
		require.Equal(b, h2, h1, "history differs (%d lanes)", n)
	}

	nr := changes / nat.Seconds()
	b.ReportMetric(nr, "native_changes/s")
	fmt.Printf("\ncatch-up of %.0f changes (%d transactions)\n", changes, txs)
	for _, n := range laneCounts {
		sr := changes / took[n].Seconds()
		b.ReportMetric(sr/nr, fmt.Sprintf("skein%d/native", n))
		fmt.Printf("  skein apply, %d lane(s) %8s  %9.0f changes/s  %5.2fx native  %5.2fx %d lane(s)\n", n, took[n].Round(time.Millisecond), sr, sr/nr,
			took[laneCounts[0]].Seconds()/took[n].Seconds(), laneCounts[0])
	}
	fmt.Printf("  native subscription    %8s  %9.0f changes/s\n", nat.Round(time.Millisecond), nr)
	// Where the CPU went: a destination near one core is what parallel apply can spread.
	for _, n := range laneCounts {
		fmt.Printf("  skein, %d lane(s): %s\n", n, shares[n])
	}
	fmt.Printf("  native: %s\n", nativeShares)
}

func byteSize(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
