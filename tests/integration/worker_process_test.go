package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// workerProcess is a skein-worker binary running as its own process.
type workerProcess struct {
	cmd *exec.Cmd
}

// buildWorker builds the worker binary, once per test run.
func buildWorker(t *testing.T) string {
	return builtBinary(t, "github.com/skein-dts/skein/worker", "skein-worker")
}

// startWorkerProcess runs bin against the dev server; env adds or overrides variables.
func startWorkerProcess(t *testing.T, bin, logFile string, env ...string) *workerProcess {
	t.Helper()
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), temporalEnv(t)...), "SKEIN_LOG_LEVEL=warn", "SKEIN_METRICS_ADDR=off") // tests at once would share :9464
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	p := &workerProcess{cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		log.Close()
	})
	return p
}

// kill ends the process at once, as a crash or an OOM kill would.
func (p *workerProcess) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	_, _ = p.cmd.Process.Wait()
}

// peakRSS is the process's peak resident memory (VmHWM), in bytes.
func (p *workerProcess) peakRSS(t *testing.T) int64 {
	t.Helper()
	peak, err := testharness.PeakRSS(p.cmd.Process.Pid)
	require.NoError(t, err)
	return peak
}

// processTask is a task over the shop pair, plus one table, run by skein-worker processes.
type processTask struct {
	srcPG, dstPG *testharness.Postgres
	src, dst     *pgx.Conn
	c            client.Client
	run          client.WorkflowRun
	first        *workerProcess // the process started with the task
	bin, logFile string
}

// startProcessTask creates the extra table with tableSQL (table is its name), starts a worker
// process (env as for startWorkerProcess) and the task named name; tune adjusts the spec.
func startProcessTask(t *testing.T, name, tableSQL, table string, tune func(*spec.Spec), env ...string) *processTask {
	t.Helper()
	p := &processTask{bin: buildWorker(t), logFile: filepath.Join(t.TempDir(), "worker.log"), c: temporalClient(t)}
	dumpLogOnFailure(t, p.logFile)
	p.srcPG, p.dstPG, p.src, p.dst = shopPair(t, true)
	testharness.Exec(t, p.src, tableSQL)
	p.first = startWorkerProcess(t, p.bin, p.logFile, env...)
	s := shopSpec(name, p.srcPG, p.dstPG)
	s.Objects[0].Tables = append(s.Objects[0].Tables, spec.Table{Name: table})
	s.Verify.Mode = spec.VerifyCount
	if tune != nil {
		tune(&s)
	}
	p.run = startTask(t, p.c, s, nil)
	return p
}

// waitRows waits until table has rows rows.
func waitRows(t *testing.T, conn *pgx.Conn, table string, rows int64, timeout time.Duration) {
	t.Helper()
	testharness.Eventually(t, timeout, func() error {
		var n int64
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			return err
		}
		if n != rows {
			return fmt.Errorf("%s: %d of %d rows applied", table, n, rows)
		}
		return nil
	})
}

// startWriter runs the statements of round i = 0, 1, … on the shop database, pausing between
// rounds, until the returned stop is called; stop returns the rounds done.
func startWriter(t *testing.T, pg *testharness.Postgres, pause time.Duration, round func(i int) []string) (stop func() int) {
	t.Helper()
	ctx := context.Background()
	writer, err := pg.Connect(ctx, "shop")
	require.NoError(t, err)
	var done atomic.Bool
	var rounds atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer writer.Close(ctx)
		for i := 0; !done.Load(); i++ {
			for _, q := range round(i) {
				if _, err := writer.Exec(ctx, q); err != nil {
					t.Errorf("%s: %v", q, err)
					return
				}
			}
			rounds.Add(1)
			time.Sleep(pause)
		}
	}()
	return func() int {
		done.Store(true)
		wg.Wait()
		return int(rounds.Load())
	}
}

// another starts one more worker process.
func (p *processTask) another(t *testing.T, env ...string) *workerProcess {
	return startWorkerProcess(t, p.bin, p.logFile, env...)
}

// TestWorkerKilledMidStream kills the worker process (SIGKILL) while changes
// stream under constant writes: a new worker process resumes from the LSN committed with the data
// and the destination ends with exactly the source's rows, nothing lost or doubled.
func TestWorkerKilledMidStream(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	p := startProcessTask(t, "it-kill", `CREATE TABLE shop.bulk (id int PRIMARY KEY, v text)`, "bulk", nil)
	srcPG, src, dst, c, run := p.srcPG, p.src, p.dst, p.c, p.run
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	stopWriter := startWriter(t, srcPG, 10*time.Millisecond, func(i int) []string {
		return []string{
			fmt.Sprintf(`INSERT INTO shop.orders (customer_id, amount, big) VALUES (%d, %d, 'kill %d')`, 1+i%1000, i, i),
			fmt.Sprintf(`UPDATE shop.orders SET amount = amount + 1 WHERE id = %d`, 1+(i*7919)%20000),
			fmt.Sprintf(`DELETE FROM shop.orders WHERE id = %d`, 1+(i*104729)%20000),
			fmt.Sprintf(`UPDATE shop.customers SET note = 'k%d' WHERE id = %d`, i, 1+(i*31)%2000),
		}
	})
	// Kill once changes are being applied.
	testharness.Eventually(t, time.Minute, func() error {
		if st := status(t, c, run.GetID()); st.Changes.Updates < 50 {
			return fmt.Errorf("%d updates applied so far", st.Changes.Updates)
		}
		return nil
	})
	p.first.kill(t)
	time.Sleep(2 * time.Second)
	p.another(t)
	time.Sleep(3 * time.Second)
	require.Greater(t, stopWriter(), 50)
	// The apply run of the killed worker times out on its heartbeat (30 s); the next run resumes.
	started := time.Now()
	testharness.Eventually(t, 3*time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	t.Logf("the new worker caught up %s after the kill", time.Since(started).Round(time.Second))
	// The status no longer shows the dead run's error as the last one: the task recovered.
	testharness.Eventually(t, 30*time.Second, func() error {
		st := status(t, c, run.GetID())
		if st.LastError != "" || st.Retry.Attempts != 0 || st.LastRecoveredError == "" {
			return fmt.Errorf("status after recovery: last_error %q, retry %+v, last_recovered_error %q", st.LastError, st.Retry, st.LastRecoveredError)
		}
		return nil
	})
	// The history names the worker processes as Skein's.
	require.True(t, strings.HasPrefix(historyIdentities(t, run.GetID())["activity"], "skein-worker:"), "%v", historyIdentities(t, run.GetID()))
}

// TestLargeTransactionBoundedMemory applies one ~300 MB source transaction: the source streams it
// before its commit (protocol 2), the worker spools it to disk and applies it at the commit, and
// the worker process's peak memory stays far below the transaction's size.
func TestLargeTransactionBoundedMemory(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	p := startProcessTask(t, "it-large-tx", `CREATE TABLE shop.bulk (id int PRIMARY KEY, v text)`, "bulk", nil,
		"SKEIN_LOG_LEVEL=info", "SKEIN_SPOOL_DIR="+t.TempDir())
	src, dst, c, run, w := p.src, p.dst, p.c, p.run, p.first
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	before := w.peakRSS(t)

	const rows = 1400000 // 1.4 M rows of 192 characters: about 300 MB of WAL
	testharness.Exec(t, src, fmt.Sprintf(`INSERT INTO shop.bulk SELECT i, repeat(md5(i::text), 6) FROM generate_series(1, %d) i`, rows))
	var walBytes int64
	require.NoError(t, src.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'::pg_lsn`).Scan(&walBytes))
	waitRows(t, dst, "mart.bulk", rows, 10*time.Minute)
	require.NoError(t, compareAll(ctx, src, dst, append(shopChecks, tableCheck{
		src: spec.QName{Schema: "shop", Name: "bulk"}, dst: spec.QName{Schema: "mart", Name: "bulk"},
		srcCols: []string{"id", "v"}, srcKey: []string{"id"},
	})))
	testharness.Eventually(t, time.Minute, func() error {
		if st := status(t, c, run.GetID()); st.Changes.Streamed < 1 {
			return fmt.Errorf("status counts %d streamed transactions", st.Changes.Streamed)
		}
		return nil
	})
	peak := w.peakRSS(t)
	t.Logf("worker peak RSS %d MiB before the transaction, %d MiB after; source WAL %d MiB", before>>20, peak>>20, walBytes>>20)
	require.Less(t, peak, int64(300<<20), "the worker held the transaction in memory")
}

// dumpLogOnFailure prints the end of a worker process's log when the test fails.
func dumpLogOnFailure(t *testing.T, logFile string) {
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := os.ReadFile(logFile); err == nil {
				lines := strings.Split(string(out), "\n")
				t.Logf("worker log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
}

// TestWorkerKilledDuringLoad kills the only worker process (SIGKILL) in the middle of the full
// load of a multi-chunk table while the source takes writes. The snapshot holder dies with it: the
// second process reloads the unfinished tables in a new snapshot, the change stream skips their
// changes that snapshot holds, and the destination ends with exactly the source's rows.
func TestWorkerKilledDuringLoad(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	p := startProcessTask(t, "it-kill-load", `CREATE TABLE shop.wide (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO shop.wide SELECT i, repeat(md5(i::text), 3), 0 FROM generate_series(1, 300000) i;`, "wide", func(s *spec.Spec) {
		s.FullLoad.ChunkMB, s.FullLoad.Parallelism = 2, 2
		s.Throttle.Full.RowsPerSecond = 20000 // about 15 s for wide: time to kill the worker in the middle
	}, "SKEIN_LOG_LEVEL=info")
	srcPG, src, dst, c, run := p.srcPG, p.src, p.dst, p.c, p.run

	stopWriter := startWriter(t, srcPG, 5*time.Millisecond, func(i int) []string {
		return []string{
			fmt.Sprintf(`UPDATE shop.wide SET n = n + 1, v = 'u%d' WHERE id = %d`, i, 1+(i*7919)%300000),
			fmt.Sprintf(`DELETE FROM shop.wide WHERE id = %d`, 1+(i*104729)%300000),
			fmt.Sprintf(`INSERT INTO shop.wide (id, v) VALUES (%d, 'new') ON CONFLICT DO NOTHING`, 300001+i),
			fmt.Sprintf(`UPDATE shop.orders SET amount = amount + 1 WHERE id = %d`, 1+(i*31)%20000),
		}
	})
	// Kill once part of wide is committed on the destination.
	testharness.Eventually(t, 3*time.Minute, func() error {
		st := status(t, c, run.GetID())
		if w := findTable(st, "shop.wide"); w.ChunksDone < 2 || w.ChunksDone == w.Chunks {
			return fmt.Errorf("phase %s, wide: %d of %d chunks", st.Phase, w.ChunksDone, w.Chunks)
		}
		return nil
	})
	p.first.kill(t)
	killed := time.Now()
	time.Sleep(2 * time.Second)
	p.another(t, "SKEIN_LOG_LEVEL=info")
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 6*time.Minute)
	t.Logf("incremental %s after the kill", time.Since(killed).Round(time.Second))
	stopWriter()
	checks := append(shopChecks, tableCheck{
		src: spec.QName{Schema: "shop", Name: "wide"}, dst: spec.QName{Schema: "mart", Name: "wide"},
		srcCols: []string{"id", "v", "n"}, srcKey: []string{"id"},
	})
	testharness.Eventually(t, 3*time.Minute, func() error { return compareAll(ctx, src, dst, checks) })
	st := status(t, c, run.GetID())
	require.Equal(t, 1, findTable(st, "shop.wide").Reloads, "wide loaded again in a new snapshot")
	require.Equal(t, api.TableDone, findTable(st, "shop.wide").State)
}

// TestLoadLargeValuesBoundedMemory loads a table of ten rows that hold 100 MB values each, then
// applies an update of one: the worker streams the rows (each is read whole from the wire, so
// memory is a few times one value), its peak memory stays at half the table's 1,000 MB, and every
// value arrives intact.
func TestLoadLargeValuesBoundedMemory(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	const valueMB, rows = 100, 10
	p := startProcessTask(t, "it-large-values", fmt.Sprintf(`CREATE TABLE shop.blobs (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO shop.blobs SELECT i, repeat(md5(i::text), %d * 1024 * 1024 / 32) FROM generate_series(1, %d) i;`, valueMB, rows), "blobs", nil)
	src, dst, c, run, w := p.src, p.dst, p.c, p.run, p.first
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 5*time.Minute)
	loadPeak := w.peakRSS(t)
	testharness.Exec(t, src, fmt.Sprintf(`UPDATE shop.blobs SET v = repeat(md5('changed'), %d * 1024 * 1024 / 32) WHERE id = 3`, valueMB))
	// Compare digests: the values are too large to compare as text in one query comfortably.
	digest := func(conn *pgx.Conn, table string) string {
		var d string
		require.NoError(t, conn.QueryRow(ctx, fmt.Sprintf(`SELECT string_agg(id || ':' || length(v) || ':' || md5(v), ',' ORDER BY id) FROM %s`, table)).Scan(&d))
		return d
	}
	want := digest(src, "shop.blobs")
	testharness.Eventually(t, 3*time.Minute, func() error {
		if got := digest(dst, "mart.blobs"); got != want {
			return fmt.Errorf("destination blobs %.80s…, source %.80s…", got, want)
		}
		return nil
	})
	peak := w.peakRSS(t)
	t.Logf("worker peak RSS after the load %d MiB, after the update %d MiB (table %d MB)", loadPeak>>20, peak>>20, valueMB*rows)
	require.Less(t, loadPeak, int64(valueMB*rows/2)<<20, "the load held rows in memory")
}

// chunksRunningOn counts the chunk copies of task that worker w runs now.
func chunksRunningOn(c client.Client, task string, w *workerProcess) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.DescribeWorkflowExecution(ctx, task, "")
	if err != nil {
		return 0
	}
	n := 0
	for _, pa := range d.PendingActivities {
		name := pa.ActivityType.GetName()
		pid := workerPID(pa.LastWorkerIdentity)
		if strings.HasPrefix(name, "CopyChunk") && pa.State == enums.PENDING_ACTIVITY_STATE_STARTED && pid == strconv.Itoa(w.cmd.Process.Pid) {
			n++
		}
	}
	return n
}

// TestThreeWorkers runs a task on three worker processes: the load's chunks spread over them, the
// snapshot holder stays on one; killing another worker while chunks copy loses nothing (its
// chunks are copied again elsewhere, once), a third stopped by SIGTERM exits cleanly within its
// stop timeout and hands its chunks back, and the destination ends equal to the source.
func TestThreeWorkers(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	p := startProcessTask(t, "it-three", `CREATE TABLE shop.wide (id int PRIMARY KEY, pad text);
INSERT INTO shop.wide SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 150000) i; ANALYZE shop.wide`, "wide", func(s *spec.Spec) {
		s.FullLoad = spec.FullLoad{Parallelism: 6, ChunkMB: 1}
		s.Throttle.Full.RowsPerSecond = 40000
	}, "SKEIN_METRICS_ADDR=off", "SKEIN_STOP_TIMEOUT=2s")
	workers := []*workerProcess{p.first, p.another(t, "SKEIN_METRICS_ADDR=off", "SKEIN_STOP_TIMEOUT=2s"),
		p.another(t, "SKEIN_METRICS_ADDR=off", "SKEIN_STOP_TIMEOUT=2s")}
	// Once chunks copy, kill a worker that does not hold the snapshot.
	var killed, holder int
	testharness.Eventually(t, 2*time.Minute, func() error {
		st := status(t, p.c, p.run.GetID())
		if done := findTable(st, "shop.wide").ChunksDone; done < 2 {
			return fmt.Errorf("%d chunks of shop.wide done", done)
		}
		holder = holderOf(p.c, p.run.GetID(), workers)
		if holder < 0 {
			return fmt.Errorf("no snapshot holder yet")
		}
		killed = (holder + 1) % len(workers)
		return nil
	})
	workers[killed].kill(t)

	// Then stop the third one gracefully (SIGTERM) while it copies: it stops taking work, its
	// chunks get the stop timeout (2 s) to finish, the rest are canceled and copied again
	// elsewhere, and it exits cleanly soon after.
	stopped := 3 - holder - killed
	testharness.Eventually(t, 2*time.Minute, func() error {
		if n := chunksRunningOn(p.c, p.run.GetID(), workers[stopped]); n == 0 {
			return fmt.Errorf("worker %d copies no chunk", stopped)
		}
		return nil
	})
	start := time.Now()
	require.NoError(t, workers[stopped].cmd.Process.Signal(syscall.SIGTERM))
	state, err := workers[stopped].cmd.Process.Wait()
	require.NoError(t, err)
	require.True(t, state.Success(), "a stopped worker exits cleanly: %v", state)
	require.Less(t, time.Since(start), 15*time.Second, "within the stop timeout and the SDK's shutdown")

	st := waitPhase(t, p.c, p.run.GetID(), api.PhaseIncremental, 5*time.Minute)
	t.Logf("last error after the faults: %q", st.LastError)
	require.Zero(t, findTable(st, "shop.wide").Reloads, "the holder lived: nothing loaded again")
	check := tableOf("shop", "wide", "mart", "wide", "id", "pad")
	require.NoError(t, compareAll(ctx, p.src, p.dst, append([]tableCheck{check}, shopChecks...)))

	// The chunks ran on more than one worker.
	identities := map[string]bool{}
	iter := p.c.GetWorkflowHistory(ctx, p.run.GetID(), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
			identities[a.GetIdentity()] = true
		}
	}
	require.GreaterOrEqual(t, len(identities), 2, "activities ran on %v", identities)
}
