// Package bench holds Skein's benchmarks (make bench-cdc): each measures Skein and, in the same
// run on the same machine, the tool users would pick instead, and prints the ratio. They are not
// tests: make test compiles them and runs none.
package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/cdc"
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
// changes, default 20,000: a million changes) with Skein's change apply and with a native
// subscription on a third cluster, from slots created before the backlog, and prints changes per
// second and the ratio.
func BenchmarkCDCCatchUp(b *testing.B) {
	ctx := context.Background()
	txs := envInt("BENCH_CDC_TRANSACTIONS", 20000)
	srcPG, src := start(b, true)
	dstPG, dst := start(b, false)
	nativePG, native := start(b, false)

	s := spec.Spec{Name: "bench", Source: srcPG.Endpoint("postgres"), Destination: dstPG.Endpoint("postgres"),
		Objects: []spec.Object{{Schema: "public"}}}
	s.ApplyDefaults()
	tables := []spec.TableMap{
		{Source: spec.QName{Schema: "public", Name: "accounts"}, Dest: spec.QName{Schema: "public", Name: "accounts"}, Operations: spec.AllOperations},
		{Source: spec.QName{Schema: "public", Name: "history"}, Dest: spec.QName{Schema: "public", Name: "history"}, Operations: spec.AllOperations},
	}
	require.NoError(b, cdc.EnsurePublication(ctx, src, s.SlotName(), cdc.Owner(s.Name), tables))
	open := dbconn.Opener{}
	repl, err := open.ConnectReplication(ctx, s.Source)
	require.NoError(b, err)
	_, err = cdc.CreateSlot(ctx, repl, s.SlotName())
	require.NoError(b, err)
	repl.Close(ctx)
	_, err = src.Exec(ctx, `CREATE PUBLICATION native_pub FOR TABLE public.accounts, public.history`)
	require.NoError(b, err)
	_, err = native.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=%d user=postgres dbname=postgres'
PUBLICATION native_pub WITH (copy_data = false, enabled = false)`, srcPG.Port))
	require.NoError(b, err)

	began := time.Now()
	from, err := cdc.CurrentWAL(ctx, src)
	require.NoError(b, err)
	_, err = src.Exec(ctx, fmt.Sprintf(backlog, txs))
	require.NoError(b, err)
	var target pglogrepl.LSN
	target, err = cdc.CurrentWAL(ctx, src)
	require.NoError(b, err)
	changes := float64(txs * 50)
	b.Logf("backlog: %d transactions, %.0f changes, %s of WAL, made in %s", txs, changes, byteSize(int64(target-from)), time.Since(began).Round(time.Millisecond))

	b.ResetTimer()
	// Skein: the apply engine of the incremental phase, from its slot, until it has passed target.
	repl, err = open.ConnectReplication(ctx, s.Source)
	require.NoError(b, err)
	defer repl.Close(ctx)
	applyConn, err := open.ConnectDestination(ctx, s.Destination)
	require.NoError(b, err)
	defer applyConn.Close(ctx)
	t0 := time.Now()
	skeinCPU := cpuShares(b, map[string]*testharness.Postgres{"destination": dstPG, "source": srcPG})
	require.NoError(b, cdc.Stream(ctx, repl, applyConn, cdc.StreamOptions{Task: "bench", Slot: s.SlotName(), Publication: s.SlotName(),
		Tables: tables, StopAt: target, StatusInterval: time.Second}))
	skein := time.Since(t0)
	skeinShares := skeinCPU()

	// Native logical replication: the subscription applies the same backlog.
	t0 = time.Now()
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

	// Both sides hold the same data.
	var a1, a2, h1, h2 int64
	require.NoError(b, dst.QueryRow(ctx, `SELECT sum(abalance), (SELECT count(*) FROM public.history) FROM public.accounts`).Scan(&a1, &h1))
	require.NoError(b, native.QueryRow(ctx, `SELECT sum(abalance), (SELECT count(*) FROM public.history) FROM public.accounts`).Scan(&a2, &h2))
	require.Equal(b, a2, a1, "accounts differ")
	require.Equal(b, h2, h1, "history differs")

	sr, nr := changes/skein.Seconds(), changes/nat.Seconds()
	b.ReportMetric(sr, "skein_changes/s")
	b.ReportMetric(nr, "native_changes/s")
	b.ReportMetric(sr/nr, "skein/native")
	fmt.Printf("\ncatch-up of %.0f changes (%d transactions)\n  skein apply          %8s  %9.0f changes/s\n  native subscription  %8s  %9.0f changes/s\n  skein / native       %8.2fx throughput\n",
		changes, txs, skein.Round(time.Millisecond), sr, nat.Round(time.Millisecond), nr, sr/nr)
	// Where the CPU went: a destination near one core is what parallel apply could spread.
	fmt.Printf("  skein:  %s\n  native: %s\n", skeinShares, nativeShares)
}

func byteSize(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
