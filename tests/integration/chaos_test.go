package integration

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/temporalx"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// The chaos suite: a task syncs a pgbench database (schema + full + incremental) while pgbench
// writes to the source throughout and faults hit every part of the system at random moments:
// worker processes killed (also the one holding the snapshot), the Temporal server killed and
// restarted on its state, source and destination restarted (fast and immediate), connections
// reset or stalled (both ways or one) by TCP proxies between the workers and the databases.
// Afterwards every table must equal the source row by row (the keyless pgbench_history as a
// multiset: a change applied twice shows), the slot must not be ahead of the progress row, and
// release must leave nothing behind.
//
// make test runs a few faults; make test-chaos runs SKEIN_CHAOS_FAULTS (50) of them. The seed is
// printed: SKEIN_CHAOS_SEED repeats the same faults in the same order.

// chaosEnv reads an integer setting of the suite.
func chaosEnv(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

// chaosRig is everything a fault can hit.
type chaosRig struct {
	t                  *testing.T
	rng                *rand.Rand
	srcPG, dstPG       *testharness.Postgres
	srcProxy, dstProxy *testharness.Proxy
	temporal           *testharness.TemporalServer
	c                  client.Client
	task               string
	bin, logFile       string
	workers            []*workerProcess
}

// lockedSource lets the fault loop and the phase watcher draw from one seeded source.
type lockedSource struct {
	mu  sync.Mutex
	src rand.Source64
}

func (l *lockedSource) Int63() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.src.Int63()
}

func (l *lockedSource) Uint64() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.src.Uint64()
}

func (l *lockedSource) Seed(seed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.src.Seed(seed)
}

// fault is one kind of fault: do injects it and waits until what it broke is started again (a
// stall ends by itself); it returns what it did.
type fault struct {
	name string
	do   func(r *chaosRig) string
}

func (r *chaosRig) pause(minMS, maxMS int) time.Duration {
	return time.Duration(minMS+r.rng.Intn(maxMS-minMS+1)) * time.Millisecond
}

func (r *chaosRig) startWorker() *workerProcess {
	return startWorkerProcess(r.t, r.bin, r.logFile, "TEMPORAL_ADDRESS="+r.temporal.Addr, "TEMPORAL_NAMESPACE=default")
}

// killWorker SIGKILLs worker i and starts a new one in its place a moment later.
func (r *chaosRig) killWorker(i int) {
	r.workers[i].kill(r.t)
	time.Sleep(r.pause(500, 2000))
	r.workers[i] = r.startWorker()
}

// holder is the index of the worker process running the snapshot holder, or -1.
func (r *chaosRig) holder() int { return holderOf(r.c, r.task, r.workers) }

// holderOf is the index among workers of the process running task's snapshot holder, or -1.
// workerPID is the process id in a worker process's identity (temporalx.WorkerIdentity:
// skein-worker:<pid>@<host>).
func workerPID(identity string) string {
	pid, _, _ := strings.Cut(strings.TrimPrefix(identity, "skein-worker:"), "@")
	return pid
}

func holderOf(c client.Client, task string, workers []*workerProcess) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.DescribeWorkflowExecution(ctx, task, "")
	if err != nil {
		return -1
	}
	for _, pa := range d.PendingActivities {
		if pa.ActivityType.GetName() != "HoldSnapshot" {
			continue
		}
		pid := workerPID(pa.LastWorkerIdentity)
		for i, w := range workers {
			if strconv.Itoa(w.cmd.Process.Pid) == pid {
				return i
			}
		}
	}
	return -1
}

var chaosFaults = []fault{
	{"kill a worker", func(r *chaosRig) string {
		i := r.rng.Intn(len(r.workers))
		r.killWorker(i)
		return fmt.Sprintf("worker %d", i)
	}},
	{"kill the snapshot holder", func(r *chaosRig) string {
		i := r.holder()
		if i < 0 {
			i = r.rng.Intn(len(r.workers))
			r.killWorker(i)
			return fmt.Sprintf("no holder running: worker %d", i)
		}
		r.killWorker(i)
		return fmt.Sprintf("worker %d held it", i)
	}},
	{"kill Temporal", func(r *chaosRig) string {
		r.temporal.Kill()
		time.Sleep(r.pause(500, 3000))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		require.NoError(r.t, r.temporal.Start(ctx))
		return "SIGKILL, restarted on its state"
	}},
	restartFault("source", "fast"),
	restartFault("source", "immediate"),
	restartFault("destination", "fast"),
	restartFault("destination", "immediate"),
	{"reset source connections", func(r *chaosRig) string {
		return fmt.Sprintf("%d reset", r.srcProxy.Reset())
	}},
	{"reset destination connections", func(r *chaosRig) string {
		return fmt.Sprintf("%d reset", r.dstProxy.Reset())
	}},
	stallFault("stall the source both ways", "source", testharness.BothWays),
	stallFault("stall the source to the worker", "source", testharness.ToClient),
	stallFault("stall the destination both ways", "destination", testharness.BothWays),
	stallFault("stall the worker to the destination", "destination", testharness.ToServer),
}

// stallFault stalls the proxy of the source or the destination in dir for 2-10 s: connections
// stay open and nothing passes, as on a network that drops packets without a reset.
func stallFault(name, side string, dir testharness.Direction) fault {
	return fault{name, func(r *chaosRig) string {
		p := r.srcProxy
		if side == "destination" {
			p = r.dstProxy
		}
		d := r.pause(2000, 10000)
		p.Stall(dir, d)
		return d.String()
	}}
}

// restartFault restarts the source or the destination server with pg_ctl stop mode (fast, or
// immediate: a crash the server recovers from at start).
func restartFault(side, mode string) fault {
	return fault{fmt.Sprintf("restart the %s (%s)", side, mode), func(r *chaosRig) string {
		pg := r.srcPG
		if side == "destination" {
			pg = r.dstPG
		}
		require.NoError(r.t, pg.RestartMode(context.Background(), mode, r.pause(0, 2000)))
		return ""
	}}
}

// phase asks the task's phase (with the step being retried), "unreachable" while Temporal cannot
// answer.
func (r *chaosRig) phase() (api.Status, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := r.c.QueryWorkflow(ctx, r.task, "", api.QueryStatus)
	if err != nil {
		return api.Status{}, "unreachable"
	}
	var st api.Status
	if err := v.Get(&st); err != nil {
		return st, "unreachable"
	}
	if st.Phase == api.PhaseRetrying && st.Step != "" {
		return st, st.Step + " (retrying)"
	}
	return st, st.Phase
}

// watchPhases polls the task's phase every 20 ms and calls inject with a fault drawn from its
// own seeded source the first time it sees each of phases (again while inject declines). The
// returned stop ends the watch and lists the phases it hit.
func watchPhases(r *chaosRig, seed int64, phases []string, inject func(phase string, f fault) bool) (stop func() []string) {
	rng := rand.New(rand.NewSource(seed + 1))
	done := make(chan struct{})
	var hit []string
	var once sync.Once
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		seen := map[string]bool{}
		for len(seen) < len(phases) {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_, phase := r.phase()
			if seen[phase] || !slices.Contains(phases, phase) {
				continue
			}
			if inject(phase, chaosFaults[rng.Intn(len(chaosFaults))]) {
				seen[phase] = true
				hit = append(hit, phase)
			}
		}
	}()
	return func() []string {
		once.Do(func() { close(done) })
		<-finished
		return hit
	}
}

// waitIncremental waits until the task streams (with faults stopped meanwhile).
func waitIncremental(t *testing.T, r *chaosRig, seed int64, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(time.Second) {
		st, phase := r.phase()
		switch {
		case phase == api.PhaseIncremental:
			return
		case phase == api.PhaseFailed || phase == api.PhasePrecheckFailed:
			t.Fatalf("seed %d: the task is %s: %s", seed, phase, st.LastError)
		case time.Now().After(deadline):
			t.Fatalf("seed %d: the task did not reach incremental in %s: phase %s\n%s", seed, timeout, phase, describe(r.c, r.task))
		}
	}
}

// startPgbench runs pgbench against db until stop is called, starting it again whenever it ends
// (a source restart aborts its clients).
func startPgbench(t *testing.T, pg *testharness.Postgres, db string, args ...string) (stop func() int) {
	t.Helper()
	var mu sync.Mutex
	var cmd *exec.Cmd
	stopped := false
	runs := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			mu.Lock()
			if stopped {
				mu.Unlock()
				return
			}
			cmd = exec.Command(pg.Bin("pgbench"), append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-U", "postgres",
				"-n", "-T", "3600"}, append(args, db)...)...)
			runs++
			err := cmd.Start()
			mu.Unlock()
			if err == nil {
				_ = cmd.Wait()
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	return func() int {
		mu.Lock()
		stopped = true
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		mu.Unlock()
		<-done
		return runs
	}
}

// TestChaos runs the suite into PostgreSQL and into IvorySQL's Oracle port (SKEIN_CHAOS_DEST
// picks one).
func TestChaos(t *testing.T) {
	parallel(t)
	eachDestination(t, func(t *testing.T) {
		if only := os.Getenv("SKEIN_CHAOS_DEST"); only != "" && !strings.HasSuffix(t.Name(), "/"+only) {
			t.Skipf("SKEIN_CHAOS_DEST=%s", only)
		}
		runChaos(t)
	})
}

// wideTables is how many small tables the schema "wide" holds besides pgbench's: their DDL
// makes the precheck, schema and post-schema phases last long enough for faults to land there.
const wideTables = 120

func runChaos(t *testing.T) {
	faults := int(chaosEnv("SKEIN_CHAOS_FAULTS", 5))
	scale := chaosEnv("SKEIN_CHAOS_SCALE", 1)
	chunkMB := int(chaosEnv("SKEIN_CHAOS_CHUNK_MB", 1))
	// make test's short run draws the same faults every time (a fixed seed); make test-chaos a new
	// draw each run.
	seed := chaosEnv("SKEIN_CHAOS_SEED", 20261201)
	if os.Getenv("SKEIN_CHAOS_FAULTS") != "" && os.Getenv("SKEIN_CHAOS_SEED") == "" {
		seed = time.Now().UnixNano()
	}
	loadRate := chaosEnv("SKEIN_CHAOS_LOAD_ROWS_PER_SECOND", 4000)
	say := func(format string, args ...any) { fmt.Println("chaos: " + fmt.Sprintf(format, args...)) }
	say("%d faults, pgbench scale %d, chunk_mb %d, load throttled to %d rows/s, seed %d (SKEIN_CHAOS_SEED=%d repeats the faults in the same order)",
		faults, scale, chunkMB, loadRate, seed, seed)
	ctx := context.Background()
	r := &chaosRig{t: t, rng: rand.New(&lockedSource{src: rand.NewSource(seed).(rand.Source64)}), task: "chaos", bin: buildWorker(t),
		logFile: filepath.Join(t.TempDir(), "worker.log")}
	dumpLogOnFailure(t, r.logFile)

	r.srcPG = testharness.NewPostgres(t, testharness.PostgresOptions{Logical: true})
	r.dstPG = newDestination(t)
	require.NoError(t, r.srcPG.CreateDatabase(ctx, "bench"))
	require.NoError(t, r.dstPG.CreateDatabase(ctx, "target"))
	out, err := exec.Command(r.srcPG.Bin("pgbench"), "-h", "127.0.0.1", "-p", strconv.Itoa(r.srcPG.Port), "-U", "postgres",
		"-i", "-q", "-s", strconv.FormatInt(scale, 10), "bench").CombinedOutput()
	require.NoError(t, err, string(out))
	src, err := r.srcPG.Connect(ctx, "bench")
	require.NoError(t, err)
	defer src.Close(ctx)
	// pgbench_history has no key: its old rows are complete only with REPLICA IDENTITY FULL.
	testharness.Exec(t, src, `ALTER TABLE public.pgbench_history REPLICA IDENTITY FULL`)
	testharness.Exec(t, src, fmt.Sprintf(`CREATE SCHEMA wide;
DO $$ BEGIN FOR i IN 1..%d LOOP
  EXECUTE format('CREATE TABLE wide.t%%s (id int PRIMARY KEY, v text NOT NULL, n int)', i);
  EXECUTE format('CREATE INDEX ON wide.t%%s (n, v)', i);
  EXECUTE format('INSERT INTO wide.t%%s SELECT g, md5(g::text), g %%%% 7 FROM generate_series(1, 20) g', i);
END LOOP; END $$`, wideTables))

	r.temporal, err = testharness.StartTemporalServer(ctx, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(r.temporal.Stop)
	r.c, err = client.Dial(client.Options{HostPort: r.temporal.Addr, Namespace: "default",
		Logger: temporalx.NewZapLogger(zap.NewNop()), DataConverter: temporalx.DataConverter()})
	require.NoError(t, err)
	defer r.c.Close()
	r.srcProxy, err = testharness.NewProxyTo(r.srcPG.Port)
	require.NoError(t, err)
	defer r.srcProxy.Close()
	r.dstProxy, err = testharness.NewProxyTo(r.dstPG.Endpoint("target").Port) // IvorySQL: its Oracle port
	require.NoError(t, err)
	defer r.dstProxy.Close()
	r.workers = []*workerProcess{r.startWorker(), r.startWorker()}

	s := spec.Spec{Name: r.task, Source: r.srcPG.Endpoint("bench"), Destination: r.dstPG.Endpoint("target"),
		Objects:  []spec.Object{{Schema: "public"}, {Schema: "wide"}},
		FullLoad: spec.FullLoad{Parallelism: 4, ChunkMB: chunkMB},
		// A throttled load lasts long enough for faults to hit it.
		Throttle:       spec.Throttle{Full: spec.ThrottleFull{RowsPerSecond: int(loadRate)}},
		IgnorePrecheck: []string{"primary_keys"},
	}
	s.Source.Port, s.Destination.Port = r.srcProxy.Port, r.dstProxy.Port
	s.ApplyDefaults()
	require.NoError(t, s.Validate())
	stopBench := startPgbench(t, r.srcPG, "bench", "-c", "4", "-j", "2", "-R", "200")
	benchStopped := false
	defer func() {
		if !benchStopped {
			stopBench()
		}
	}()
	time.Sleep(time.Second)
	run, err := r.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: r.task, TaskQueue: api.TaskQueue}, api.WorkflowName, s,
		&workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 500 * time.Millisecond, HistoryLimit: 500}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.c.TerminateWorkflow(context.Background(), r.task, "", "test over") })

	// The faults, at random moments 0.3-6 s apart (the first ones sooner), across every phase;
	// besides them, one fault as the task enters each short phase (precheck, schema, post-schema).
	table := map[string]map[string]int{}
	phases := map[string]bool{}
	var faultMu sync.Mutex
	// record injects f and counts it; the caller holds faultMu.
	record := func(phase string, f fault, number string) {
		detail := f.do(r)
		say("fault %s in %-12s %s %s", number, phase, f.name, detail)
		if table[f.name] == nil {
			table[f.name] = map[string]int{}
		}
		table[f.name][phase]++
		phases[phase] = true
	}
	inject := func(phase string, f fault, number string) {
		faultMu.Lock()
		defer faultMu.Unlock()
		record(phase, f, number)
	}
	// At a phase's entry only when no other fault is under way: it would label the wrong phase.
	stopWatch := watchPhases(r, seed, []string{api.PhasePrechecking, api.PhaseSchema, api.PhasePostSchema},
		func(phase string, f fault) bool {
			if !faultMu.TryLock() {
				return false
			}
			defer faultMu.Unlock()
			record(phase, f, "at entry")
			return true
		})
	defer stopWatch()
	// The drawn faults start with the load: the watcher covers the phases before it.
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		st, phase := r.phase()
		if phase == api.PhaseFailed || phase == api.PhasePrecheckFailed {
			t.Fatalf("seed %d: the task is %s: %s", seed, phase, st.LastError)
		}
		if phase != "unreachable" && !strings.HasPrefix(phase, api.PhasePrechecking) && !strings.HasPrefix(phase, api.PhaseSchema) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: the task did not start its load in 3 minutes: phase %s\n%s", seed, phase, describe(r.c, r.task))
		}
	}
	for i := 0; i < faults; i++ {
		if i == faults/2 && faults >= 10 {
			// The first half hit the start and the load; the second half hits the stream.
			waitIncremental(t, r, seed, 6*time.Minute)
		}
		if i < 3 {
			time.Sleep(r.pause(300, 1500))
		} else {
			time.Sleep(r.pause(500, 6000))
		}
		st, phase := r.phase()
		if phase == api.PhaseFailed || phase == api.PhasePrecheckFailed {
			t.Fatalf("seed %d: the task is %s before fault %d: %s", seed, phase, i+1, st.LastError)
		}
		inject(phase, chaosFaults[r.rng.Intn(len(chaosFaults))], fmt.Sprintf("%2d/%d", i+1, faults))
	}
	// The stream applies some of pgbench's changes before it stops (the faults may all have hit
	// the start).
	waitIncremental(t, r, seed, 6*time.Minute)
	time.Sleep(3 * time.Second)
	rounds := stopBench()
	benchStopped = true
	say("pgbench ran %d times (restarted after source restarts)", rounds)

	// Convergence: the task streams and every table equals the source, row by row. (The faults
	// restart the servers, a phase-entry fault maybe still now: connect anew when closed.)
	var dst *pgx.Conn
	reconnect := func() error {
		var err error
		if src.IsClosed() || src.Ping(ctx) != nil {
			if src, err = r.srcPG.Connect(ctx, "bench"); err != nil {
				return err
			}
		}
		if dst == nil || dst.IsClosed() || dst.Ping(ctx) != nil {
			dst, err = r.dstPG.Connect(ctx, "target")
		}
		return err
	}
	src.Close(ctx)
	require.NoError(t, reconnect())
	defer func() { src.Close(ctx); dst.Close(ctx) }()
	checks := []tableCheck{
		{src: spec.QName{Schema: "public", Name: "pgbench_accounts"}, dst: spec.QName{Schema: "public", Name: "pgbench_accounts"},
			srcCols: []string{"aid", "bid", "abalance", "filler"}, srcKey: []string{"aid"}},
		{src: spec.QName{Schema: "public", Name: "pgbench_branches"}, dst: spec.QName{Schema: "public", Name: "pgbench_branches"},
			srcCols: []string{"bid", "bbalance", "filler"}, srcKey: []string{"bid"}},
		{src: spec.QName{Schema: "public", Name: "pgbench_tellers"}, dst: spec.QName{Schema: "public", Name: "pgbench_tellers"},
			srcCols: []string{"tid", "bid", "tbalance", "filler"}, srcKey: []string{"tid"}},
		// Keyless: ordered by every column, so a duplicate shows as a row too many.
		{src: spec.QName{Schema: "public", Name: "pgbench_history"}, dst: spec.QName{Schema: "public", Name: "pgbench_history"},
			srcCols: []string{"tid", "bid", "aid", "delta", "mtime", "filler"}, srcKey: []string{"aid", "tid", "bid", "delta", "mtime", "filler"}},
	}
	for i := 1; i <= wideTables; i++ {
		q := spec.QName{Schema: "wide", Name: fmt.Sprintf("t%d", i)}
		checks = append(checks, tableCheck{src: q, dst: q, srcCols: []string{"id", "v", "n"}, srcKey: []string{"id"}})
	}
	start := time.Now()
	var last error
	for deadline := time.Now().Add(6 * time.Minute); ; {
		st, phase := r.phase()
		if phase == api.PhaseFailed || phase == api.PhasePrecheckFailed {
			t.Fatalf("seed %d: the task is %s: %s", seed, phase, st.LastError)
		}
		if phase == api.PhaseIncremental {
			if last = reconnect(); last == nil {
				if last = compareAll(ctx, src, dst, checks); last == nil {
					break
				}
			}
		} else {
			last = fmt.Errorf("phase %s", phase)
		}
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: not converged in 6 minutes after the last fault: %v\n%s", seed, last, describe(r.c, r.task))
		}
		time.Sleep(time.Second)
	}
	say("converged %.0fs after the last fault: every table equal row by row", time.Since(start).Seconds())
	entered := stopWatch()
	require.NoError(t, reconnect())

	// The progress row and the slot agree: the row is not ahead of the source's WAL (that would skip
	// changes to come), and the slot catches up with it (the source keeps no WAL for the task
	// beyond what the destination has). The slot may confirm past the row: WAL without changes of
	// the selection needs no row.
	var progress string
	require.NoError(t, dst.QueryRow(ctx, `SELECT lsn::text FROM skein.progress WHERE task = 'chaos'`).Scan(&progress))
	var beyond bool
	require.NoError(t, src.QueryRow(ctx, `SELECT $1::pg_lsn > pg_current_wal_lsn()`, progress).Scan(&beyond))
	require.False(t, beyond, "the progress row %s is ahead of the source's WAL", progress)
	testharness.Eventually(t, time.Minute, func() error {
		var slotFlush string
		var behind bool
		if err := src.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, confirmed_flush_lsn < $1::pg_lsn FROM pg_replication_slots
WHERE slot_name = 'skein_chaos'`, progress).Scan(&slotFlush, &behind); err != nil {
			return err
		}
		if behind {
			return fmt.Errorf("slot confirmed %s, destination committed %s", slotFlush, progress)
		}
		return nil
	})

	// Release leaves nothing behind.
	require.NoError(t, r.c.SignalWorkflow(ctx, r.task, "", api.SignalRelease, nil))
	relCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	require.NoError(t, r.c.GetWorkflow(relCtx, r.task, "").Get(relCtx, nil))
	_ = run
	var n int
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'skein%'`).Scan(&n))
	require.Zero(t, n, "slots left on the source")
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname LIKE 'skein%'`).Scan(&n))
	require.Zero(t, n, "publications left on the source")
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'skein'`).Scan(&n))
	require.Zero(t, n, "bookkeeping left on the destination")

	// The table of faults by the phase they hit.
	var cols []string
	for p := range phases {
		cols = append(cols, p)
	}
	sort.Strings(cols)
	var names []string
	for name := range table {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 2, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "fault\t%s\ttotal\toutcome\n", strings.Join(cols, "\t"))
	for _, name := range names {
		total := 0
		cells := make([]string, len(cols))
		for i, p := range cols {
			cells[i] = strconv.Itoa(table[name][p])
			total += table[name][p]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\tsurvived\n", name, strings.Join(cells, "\t"), total)
	}
	_ = tw.Flush()
	say("seed %d: %d faults and %d at phase entries (%s), all survived: tables equal row by row, slot and progress row agree, nothing left after release\n%s",
		seed, faults, len(entered), strings.Join(entered, ", "), b.String())
}
