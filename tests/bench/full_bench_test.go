package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// fullDataset is the full-load benchmark's source database (at scale 100, about 2.3 GB): a wide
// table with TOASTed text and bytea, a narrow table of 20 million rows, and 500 small tables.
const fullDataset = `
CREATE SCHEMA bench;
CREATE TABLE bench.wide (id bigint PRIMARY KEY, title text NOT NULL, body text NOT NULL, blob bytea NOT NULL, created timestamptz NOT NULL);
INSERT INTO bench.wide
SELECT i, md5(i::text),
       (SELECT string_agg(md5(i::text || '-' || k), '') FROM generate_series(1, 100) k),
       (SELECT decode(string_agg(md5(k || '-' || i::text), ''), 'hex') FROM generate_series(1, 32) k),
       timestamptz '2024-01-01' + i * interval '1 second'
FROM generate_series(1, 2500 * %[1]d) i;
CREATE TABLE bench.narrow (id bigint PRIMARY KEY, a int NOT NULL, b int NOT NULL, at timestamptz NOT NULL);
INSERT INTO bench.narrow SELECT i, i %% 1000, (i * 7) %% 100000, timestamptz '2024-01-01' + i * interval '1 ms'
FROM generate_series(1, 200000 * %[1]d) i;
DO $$
BEGIN
  FOR t IN 1..500 LOOP
    EXECUTE format('CREATE TABLE bench.small_%%s (id int PRIMARY KEY, v text NOT NULL)', t);
    EXECUTE format('INSERT INTO bench.small_%%s SELECT i, md5(i::text) FROM generate_series(1, 1000) i', t);
  END LOOP;
END $$;
`

// BenchmarkFullLoad loads the same database (BENCH_FULL_SCALE percent of about 2.3 GB, default
// 100) into empty destination databases with Skein (a full-only task with schema sync), pgcopydb
// clone, pg_dump -Fd -j N + pg_restore -j N, and a bare lower bound (N parallel psql COPY pipes,
// tables created beforehand, no indexes, no orchestration), N = BENCH_FULL_JOBS (default 4), one
// after the other, BENCH_RUNS times; it prints each tool's time and Skein's ratio to each, as
// medians and ranges (each ratio taken within a run).
func BenchmarkFullLoad(b *testing.B) {
	ctx := context.Background()
	scale, jobs := envInt("BENCH_FULL_SCALE", 100), envInt("BENCH_FULL_JOBS", 4)
	bin, err := testharness.BinDir()
	require.NoError(b, err)
	tools := map[string]string{}
	for _, t := range []string{"pg_dump", "pg_restore", "psql"} {
		tools[t] = filepath.Join(bin, t)
	}
	pgcopydb, _ := exec.LookPath("pgcopydb")

	settings := []string{"shared_buffers = 1GB", "max_wal_size = 16GB", "checkpoint_timeout = 30min",
		"maintenance_work_mem = 512MB", "max_parallel_maintenance_workers = 2"}
	srcPG, err := testharness.StartPostgres(ctx, testharness.PostgresOptions{Settings: settings})
	require.NoError(b, err)
	b.Cleanup(func() { _ = srcPG.Stop() })
	dstPG, err := testharness.StartPostgres(ctx, testharness.PostgresOptions{Settings: settings})
	require.NoError(b, err)
	b.Cleanup(func() { _ = dstPG.Stop() })
	require.NoError(b, srcPG.CreateDatabase(ctx, "src"))
	src, err := srcPG.Connect(ctx, "src")
	require.NoError(b, err)
	defer src.Close(ctx)
	began := time.Now()
	_, err = src.Exec(ctx, fmt.Sprintf(fullDataset, scale))
	require.NoError(b, err)
	_, err = src.Exec(ctx, "VACUUM ANALYZE")
	require.NoError(b, err)
	var size int64
	require.NoError(b, src.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&size))
	want := rowCounts(b, src)
	b.Logf("dataset: %s in %d tables, made in %s", byteSize(size), len(want), time.Since(began).Round(time.Second))
	srcURL := srcPG.URL("src")
	b.ResetTimer()

	selected := toolSelection("BENCH_FULL_TOOLS")
	sh := shell(b, bin)
	// load times one tool's load into a new database, checks its row counts and drops it (the
	// runs would not fit on the disk otherwise).
	times := map[string]spread{}
	load := func(name, db string, prepare func(dstURL string), load func(dstURL string)) time.Duration {
		require.NoError(b, dstPG.CreateDatabase(ctx, db))
		if prepare != nil {
			prepare(dstPG.URL(db))
		}
		t0 := time.Now()
		cpu := cpuShares(b, map[string]*testharness.Postgres{"source": srcPG, "destination": dstPG})
		load(dstPG.URL(db))
		took := time.Since(t0)
		use := cpu()
		dst, err := dstPG.Connect(ctx, db)
		require.NoError(b, err)
		require.Equal(b, want, rowCounts(b, dst), "%s: row counts differ from the source", name)
		dst.Close(ctx)
		admin, err := dstPG.Connect(ctx, "postgres")
		require.NoError(b, err)
		_, err = admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize())
		require.NoError(b, err)
		admin.Close(ctx)
		times[name] = append(times[name], took.Seconds())
		// Skein's worker runs in this process; the other tools' processes are not counted.
		fmt.Printf("  %-10s %8s  %s\n", name, took.Round(100*time.Millisecond), use)
		return took
	}
	runs := benchRuns()
	fmt.Printf("\nfull load of %s (%d tables), %d jobs, %d alternating runs\n", byteSize(size), len(want), jobs, runs)
	if pgcopydb == "" && selected("pgcopydb") {
		fmt.Println("  pgcopydb   not installed (apt-get install pgcopydb): left out")
	}
	var c client.Client
	if selected("skein") {
		var stopTemporal func()
		c, stopTemporal = startSkein(b)
		defer stopTemporal()
	}
	ratios := map[string]spread{}
	for r := range runs {
		fmt.Printf("run %d/%d: load average %s before it\n", r+1, runs, loadAverage())
		var skein time.Duration
		if selected("skein") {
			skein = load("skein", "skein", nil, func(string) { skeinLoad(b, c, srcPG, dstPG, jobs, r) })
		}
		other := map[string]time.Duration{}
		if pgcopydb != "" && selected("pgcopydb") {
			other["pgcopydb"] = load("pgcopydb", "pgcopydb", nil, func(dstURL string) {
				dir := b.TempDir()
				sh(fmt.Sprintf("%s clone --source '%s' --target '%s' --table-jobs %d --index-jobs %d --dir %s --no-owner --no-acl",
					pgcopydb, srcURL, dstURL, jobs, jobs, dir))
			})
		}
		if selected("pg_dump") {
			other["pg_dump"] = load("pg_dump", "pg_dump", nil, func(dstURL string) {
				dir := filepath.Join(b.TempDir(), "dump")
				sh(fmt.Sprintf("%s -Fd -j %d -f %s '%s' && %s -j %d --no-owner -d '%s' %s",
					tools["pg_dump"], jobs, dir, srcURL, tools["pg_restore"], jobs, dstURL, dir))
			})
		}
		// The lower bound: the tables exist beforehand (not timed) and nothing but the data moves.
		if selected("bare") {
			other["bare COPY"] = load("bare COPY", "bare", func(dstURL string) {
				sh(fmt.Sprintf("%s --schema-only --section=pre-data '%s' | %s -q -v ON_ERROR_STOP=1 '%s'",
					tools["pg_dump"], srcURL, tools["psql"], dstURL))
			}, func(dstURL string) { bareLoad(b, sh, tools["psql"], srcURL, dstURL, tablesOf(want), jobs) })
		}
		for name, d := range other {
			if skein > 0 {
				ratios[name] = append(ratios[name], skein.Seconds()/d.Seconds())
			}
		}
	}
	b.StopTimer()

	fmt.Println("time, median and range (bare COPY: tables created beforehand, no indexes)")
	for _, name := range []string{"skein", "pgcopydb", "pg_dump", "bare COPY"} {
		if t, ok := times[name]; ok {
			fmt.Printf("  %-10s %s s\n", name, t.format("%.1f"))
		}
	}
	fmt.Println("skein / other (time; below 1 is faster), median and range")
	for _, name := range []string{"pgcopydb", "pg_dump", "bare COPY"} {
		if r, ok := ratios[name]; ok {
			fmt.Printf("  skein / %-10s %s\n", name, r.format("%.2fx"))
			b.ReportMetric(r.median(), "skein/"+strings.ReplaceAll(name, " ", "_"))
		}
	}
	b.ReportMetric(times["skein"].median(), "skein_s")
}

// startSkein starts a Temporal dev server and a worker in this process.
func startSkein(b *testing.B) (client.Client, func()) {
	dev, err := testharness.StartTemporal(context.Background())
	require.NoError(b, err)
	c := dev.Client()
	w := worker.New(c, api.TaskQueue, activities.WorkerOptions())
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{Open: dbconn.Opener{}, Log: zap.NewNop(), Client: c})
	require.NoError(b, w.Start())
	return c, func() { w.Stop(); _ = dev.Stop() }
}

// skeinLoad runs a full-only task with schema sync (no verification, as the other tools) into
// database "skein" until it finishes; run numbers the task.
// waitIncremental waits until task name reaches the incremental phase (within timeout, unless it
// is 0), failing when the task fails.
func waitIncremental(b *testing.B, c client.Client, name string, timeout time.Duration) {
	b.Helper()
	start := time.Now()
	for ; ; time.Sleep(500 * time.Millisecond) {
		v, err := c.QueryWorkflow(context.Background(), name, "", api.QueryStatus)
		var st api.Status
		if err == nil && v.Get(&st) == nil {
			require.NotEqual(b, api.PhaseFailed, st.Phase, st.LastError)
			if st.Phase == api.PhaseIncremental {
				return
			}
		}
		require.True(b, timeout == 0 || time.Since(start) < timeout, "%s did not reach incremental", name)
	}
}

func skeinLoad(b *testing.B, c client.Client, srcPG, dstPG *testharness.Postgres, jobs, run int) {
	ctx := context.Background()
	off := false
	s := spec.Spec{Name: fmt.Sprintf("bench-full-%d", run), Source: srcPG.Endpoint("src"), Destination: dstPG.Endpoint("skein"),
		Objects: []spec.Object{{Schema: "bench"}}, Sync: spec.Sync{Incremental: &off}}
	s.FullLoad.Parallelism = jobs
	s.Verify.Mode = spec.VerifyNone
	s.ApplyDefaults()
	require.NoError(b, s.Validate())
	wf, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: s.Name, TaskQueue: api.TaskQueue}, api.WorkflowName, s, nil)
	require.NoError(b, err)
	// Where the time goes: the phases as the status query shows them.
	done := make(chan error, 1)
	go func() { done <- wf.Get(ctx, nil) }()
	t0 := time.Now()
	var phases []string
	var at []time.Duration
	for {
		select {
		case err := <-done:
			require.NoError(b, err)
			at = append(at, time.Since(t0))
			var parts []string
			for i, p := range phases {
				parts = append(parts, fmt.Sprintf("%s %s", p, (at[i+1]-at[i]).Round(100*time.Millisecond)))
			}
			fmt.Printf("             skein phases: %s\n", strings.Join(parts, ", "))
			printActivities(b, c, s.Name)
			return
		case <-time.After(200 * time.Millisecond):
		}
		v, err := c.QueryWorkflow(ctx, s.Name, "", api.QueryStatus)
		if err != nil {
			continue
		}
		var st api.Status
		if v.Get(&st) == nil && (len(phases) == 0 || phases[len(phases)-1] != st.Phase) {
			phases = append(phases, st.Phase)
			at = append(at, time.Since(t0))
		}
	}
}

// toolSelection reads a benchmark's tool list from the environment variable name
// (comma-separated, e.g. skein,pgcopydb,pg_dump,bare): it tells whether a tool runs (all of them
// when the variable is empty).
func toolSelection(name string) func(tool string) bool {
	v := os.Getenv(name)
	return func(tool string) bool { return v == "" || slices.Contains(strings.Split(v, ","), tool) }
}

// printActivities prints, per activity type of the task's history, how many ran, their summed
// run time and the span from the first start to the last end (where the load's time went).
func printActivities(b *testing.B, c client.Client, id string) {
	type span struct {
		n          int
		busy       time.Duration
		first, end time.Time
	}
	byType := map[string]*span{}
	scheduled := map[int64]string{}
	started := map[int64]time.Time{}
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(b, err)
		at := ev.GetEventTime().AsTime()
		switch {
		case ev.GetActivityTaskScheduledEventAttributes() != nil:
			scheduled[ev.GetEventId()] = ev.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
		case ev.GetActivityTaskStartedEventAttributes() != nil:
			started[ev.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] = at
		case ev.GetActivityTaskCompletedEventAttributes() != nil:
			id := ev.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()
			sp := byType[scheduled[id]]
			if sp == nil {
				sp = &span{first: started[id]}
				byType[scheduled[id]] = sp
			}
			sp.n++
			sp.busy += at.Sub(started[id])
			if started[id].Before(sp.first) {
				sp.first = started[id]
			}
			if at.After(sp.end) {
				sp.end = at
			}
		}
	}
	names := make([]string, 0, len(byType))
	for n := range byType {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return byType[a].first.Compare(byType[b].first) })
	for _, n := range names {
		sp := byType[n]
		fmt.Printf("             %-22s %4d run %8s, from %s to %s\n", n, sp.n, sp.busy.Round(100*time.Millisecond),
			sp.first.Format("15:04:05.0"), sp.end.Format("15:04:05.0"))
	}
}

// bareLoad copies every table with jobs parallel psql COPY pipes.
func bareLoad(b *testing.B, sh func(string), psql, srcURL, dstURL string, tables []string, jobs int) {
	next := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range next {
				sh(fmt.Sprintf(`%s -X -q -c "COPY %s TO STDOUT" '%s' | %s -X -q -c "COPY %s FROM STDIN" '%s'`, psql, t, srcURL, psql, t, dstURL))
			}
		}()
	}
	for _, t := range tables {
		next <- t
	}
	close(next)
	wg.Wait()
}

// rowCounts is the row count of every table of schema bench.
func rowCounts(b *testing.B, conn *pgx.Conn) map[string]int64 {
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables WHERE schemaname = 'bench' ORDER BY 1`)
	require.NoError(b, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(b, err)
	counts := map[string]int64{}
	for _, n := range names {
		var c int64
		require.NoError(b, conn.QueryRow(ctx, "SELECT count(*) FROM "+n).Scan(&c))
		counts[n] = c
	}
	return counts
}

// tablesOf lists the tables of counts, largest first (as every tool schedules them).
func tablesOf(counts map[string]int64) []string {
	var names []string
	for n := range counts {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(counts[b], counts[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return names
}

// shell returns a runner of bash scripts (with pipefail) that finds the PostgreSQL tools of bin
// first on PATH and fails the benchmark with the script's last output lines.
func shell(b *testing.B, bin string) func(script string) {
	return func(script string) {
		out, err := command(context.Background(), bin, script).CombinedOutput()
		require.NoError(b, err, "%s\n%s", script, tail(out))
	}
}

// shellWithin runs script as shell does, and ends it (and what it started) after limit: it returns
// nil when the script succeeded in time, else why not.
func shellWithin(bin string, limit time.Duration, script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := command(ctx, bin, script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("ended after %s", limit)
	}
	if err != nil {
		return fmt.Errorf("%w: %s", err, tail(out))
	}
	return nil
}

// command is script run by bash (pipefail) with bin first on the PATH.
func command(ctx context.Context, bin, script string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	return cmd
}

func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
