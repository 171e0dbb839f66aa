package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// lagProbe records when each probe row was written on the source (clock_timestamp, not the
// transaction start).
const lagProbe = `CREATE TABLE public.lagprobe (id bigserial PRIMARY KEY, aid int, mtime timestamptz NOT NULL DEFAULT clock_timestamp())`

// lagScript is one pgbench transaction: an account update and a probe row.
const lagScript = `\set aid random(1, 200000)
BEGIN;
UPDATE public.accounts SET abalance = abalance + 1 WHERE aid = :aid;
INSERT INTO public.lagprobe (aid) VALUES (:aid);
END;
`

// lagStats are the percentiles of the time a probe row became visible on the destination minus
// the time it was written on the source.
type lagStats struct {
	rows          int64
	p50, p99, max time.Duration
}

func (l lagStats) String() string {
	return fmt.Sprintf("p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms  (%d rows)", ms(l.p50), ms(l.p99), ms(l.max), l.rows)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkCDCLag runs a pgbench workload at a fixed rate (BENCH_LAG_TPS, default 1,000
// transactions/s, for BENCH_LAG_SECONDS, default 30), applied by Skein's change apply (one lane,
// its defaults) and by a native subscription on another cluster, alternately, BENCH_RUNS times,
// and prints the median and range of each one's p50 and p99 lag and of their ratios.
func BenchmarkCDCLag(b *testing.B) {
	ctx := context.Background()
	tps, secs := envInt("BENCH_LAG_TPS", 1000), envInt("BENCH_LAG_SECONDS", 30)
	runs := benchRuns()
	srcPG, src := start(b, true)
	dstPG, dst := start(b, false)
	nativePG, native := start(b, false)
	for _, c := range []*pgx.Conn{src, dst, native} {
		_, err := c.Exec(ctx, lagProbe)
		require.NoError(b, err)
	}
	s := spec.Spec{Name: "lag", Source: srcPG.Endpoint("postgres"), Destination: dstPG.Endpoint("postgres"),
		Objects: []spec.Object{{Schema: "public"}}}
	s.ApplyDefaults()
	var tables []spec.TableMap
	for _, n := range []string{"accounts", "lagprobe"} {
		q := spec.QName{Schema: "public", Name: n}
		tables = append(tables, spec.TableMap{Source: q, Dest: q, Operations: spec.AllOperations})
	}
	require.NoError(b, source.EnsurePublication(ctx, src, s.SlotName(), source.Owner(s.Name), tables))
	_, err := src.Exec(ctx, `CREATE PUBLICATION native_pub FOR TABLE public.accounts, public.lagprobe`)
	require.NoError(b, err)
	open := dbconn.Opener{}
	script := writeLagScript(b)
	b.ResetTimer()

	var skeinP50, skeinP99, nativeP50, nativeP99, ratioP50, ratioP99 spread
	for r := range runs {
		fmt.Printf("run %d/%d: load average %s before it\n", r+1, runs, loadAverage())
		// Skein: the apply engine of the incremental phase, with its defaults, from a slot made now.
		slot := fmt.Sprintf("%s_%d", s.SlotName(), r)
		repl, err := open.ConnectReplication(ctx, s.Source)
		require.NoError(b, err)
		_, err = source.CreateSlot(ctx, repl, slot)
		require.NoError(b, err)
		applyConn, err := open.ConnectDestination(ctx, s.Destination)
		require.NoError(b, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- cdc.Stream(runCtx, repl, applyConn, cdc.StreamOptions{Task: slot, Slot: slot, Publication: s.SlotName(), Tables: tables})
		}()
		from := lastProbe(b, src)
		obs := observe(b, dstPG, from)
		skeinTPS := pgbench(b, srcPG, script, tps, secs)
		skein := obs.lag(b, src, from)
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			require.NoError(b, err)
		}
		repl.Close(ctx)
		applyConn.Close(ctx)
		require.NoError(b, source.DropSlot(ctx, src, slot))

		// Native logical replication: a subscription whose slot starts now.
		from = lastProbe(b, src)
		_, err = native.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=%d user=postgres dbname=postgres'
PUBLICATION native_pub WITH (copy_data = false)`, srcPG.Port))
		require.NoError(b, err)
		obs = observe(b, nativePG, from)
		nativeTPS := pgbench(b, srcPG, script, tps, secs)
		nat := obs.lag(b, src, from)
		_, err = native.Exec(ctx, `DROP SUBSCRIPTION native_sub`)
		require.NoError(b, err)
		fmt.Printf("  skein   %s  at %.0f tps\n  native  %s  at %.0f tps\n", skein, skeinTPS, nat, nativeTPS)
		skeinP50, skeinP99 = append(skeinP50, ms(skein.p50)), append(skeinP99, ms(skein.p99))
		nativeP50, nativeP99 = append(nativeP50, ms(nat.p50)), append(nativeP99, ms(nat.p99))
		ratioP50, ratioP99 = append(ratioP50, ms(skein.p50)/ms(nat.p50)), append(ratioP99, ms(skein.p99)/ms(nat.p99))
	}
	b.StopTimer()

	b.ReportMetric(skeinP99.median(), "skein_p99_ms")
	b.ReportMetric(nativeP99.median(), "native_p99_ms")
	fmt.Printf("\nlag at %d transactions/s for %d s (visible on the destination - written on the source), medians and ranges of %d alternating runs, %s\n"+
		"  skein apply          p50 %s ms  p99 %s ms\n  native subscription  p50 %s ms  p99 %s ms\n  skein / native       p50 %s  p99 %s\n",
		tps, secs, runs, conditions(), skeinP50.format("%.1f"), skeinP99.format("%.1f"), nativeP50.format("%.1f"), nativeP99.format("%.1f"),
		ratioP50.format("%.2fx"), ratioP99.format("%.2fx"))
}

// pgbench runs the script against pg at rate tps for secs seconds and returns the achieved rate.
func pgbench(b *testing.B, pg *testharness.Postgres, script string, tps, secs int) float64 {
	b.Helper()
	bin, err := testharness.BinDir()
	require.NoError(b, err)
	cmd := exec.Command(filepath.Join(bin, "pgbench"), "-n", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres",
		"-c", "4", "-j", "2", "-R", strconv.Itoa(tps), "-T", strconv.Itoa(secs), "-f", script, "postgres")
	// Commits flush the WAL as in production: a walsender sends only flushed WAL, and the test
	// clusters' synchronous_commit = off would add up to wal_writer_delay to every lag.
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c synchronous_commit=on")
	out, err := cmd.CombinedOutput()
	require.NoError(b, err, string(out))
	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	require.NotNil(b, m, string(out))
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// observer watches a destination's probe rows and records when each became visible there: an
// outside reader's view, the same for Skein and a native subscription (a native subscriber records
// the source's commit time as its own, so commit timestamps cannot measure it).
type observer struct {
	mu   sync.Mutex
	seen map[int64]time.Time
	done chan error
	stop context.CancelFunc
}

func observe(b *testing.B, pg *testharness.Postgres, from int64) *observer {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pg.Connect(ctx, "postgres")
	require.NoError(b, err)
	o := &observer{seen: map[int64]time.Time{}, done: make(chan error, 1), stop: cancel}
	go func() {
		defer conn.Close(context.Background())
		low := from // every id up to low has been seen
		for ctx.Err() == nil {
			// The query's snapshot is taken when it starts: rows it returns were visible then.
			at := time.Now()
			rows, err := conn.Query(ctx, `SELECT id FROM public.lagprobe WHERE id > $1`, low)
			if err == nil {
				var ids []int64
				ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
				o.mu.Lock()
				for _, id := range ids {
					if _, ok := o.seen[id]; !ok {
						o.seen[id] = at
					}
				}
				for _, ok := o.seen[low+1]; ok; _, ok = o.seen[low+1] {
					low++
				}
				o.mu.Unlock()
			}
			if err != nil {
				if ctx.Err() == nil {
					o.done <- err
					return
				}
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		o.done <- nil
	}()
	return o
}

// lag waits until the observer has seen every probe row above id from on the source, stops it
// and returns the distribution of visible-on-destination minus written-on-source.
func (o *observer) lag(b *testing.B, src *pgx.Conn, from int64) lagStats {
	b.Helper()
	ctx := context.Background()
	rows, err := src.Query(ctx, `SELECT id, mtime FROM public.lagprobe WHERE id > $1`, from)
	require.NoError(b, err)
	written := map[int64]time.Time{}
	var id int64
	var mtime time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &mtime}, func() error { written[id] = mtime; return nil })
	require.NoError(b, err)
	require.NotEmpty(b, written)
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		o.mu.Lock()
		missing := 0
		for id := range written {
			if _, ok := o.seen[id]; !ok {
				missing++
			}
		}
		o.mu.Unlock()
		if missing == 0 {
			break
		}
		require.True(b, time.Now().Before(deadline), "the destination misses %d of %d probe rows", missing, len(written))
	}
	o.stop()
	require.NoError(b, <-o.done)
	lags := make([]time.Duration, 0, len(written))
	for id, w := range written {
		lags = append(lags, o.seen[id].Sub(w))
	}
	slices.Sort(lags)
	pct := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	return lagStats{rows: int64(len(lags)), p50: pct(0.5), p99: pct(0.99), max: lags[len(lags)-1]}
}

// writeLagScript writes lagScript to a file for pgbench and returns its path.
func writeLagScript(b *testing.B) string {
	b.Helper()
	script := filepath.Join(b.TempDir(), "lag.sql")
	require.NoError(b, os.WriteFile(script, []byte(lagScript), 0o644))
	return script
}

// lastProbe is the id of the last probe row written on the source.
func lastProbe(b *testing.B, src *pgx.Conn) int64 {
	b.Helper()
	var id int64
	require.NoError(b, src.QueryRow(context.Background(), `SELECT coalesce(max(id), 0) FROM public.lagprobe`).Scan(&id))
	return id
}

func secondsDur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
