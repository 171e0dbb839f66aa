package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"sigs.k8s.io/yaml"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/testharness"
)

// buildSkein builds the skein binary, once per test run.
func buildSkein(t *testing.T) string {
	return builtBinary(t, "github.com/skein-dts/skein/starter", "skein")
}

// builtBinary builds the main package pkg as name once per test run (binDir, removed by
// TestMain), and returns its path.
func builtBinary(t *testing.T, pkg, name string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	bin := filepath.Join(binDir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

var binMu sync.Mutex

type cliResult struct {
	stdout, stderr string
	code           int
}

func runSkein(t *testing.T, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), temporalEnv(t)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func TestCLI(t *testing.T) {
	parallel(t)
	bin := buildSkein(t)
	ctx := context.Background()
	srcPG, dstPG, _, _ := shopPair(t, true)
	var err error
	startWorker(t, t.TempDir())

	dir := t.TempDir()
	s := shopSpec("it-cli", srcPG, dstPG)
	good, err := yaml.Marshal(s)
	require.NoError(t, err)
	goodFile := filepath.Join(dir, "task.yaml")
	require.NoError(t, os.WriteFile(goodFile, good, 0o600))
	badFile := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(badFile, []byte(strings.Replace(string(good), "database: shop", "database: my-shop", 1)+"colour: blue\n"), 0o600))

	t.Run("bad spec exits 2 naming the fields, starts nothing", func(t *testing.T) {
		r := runSkein(t, bin, "start", "-f", badFile)
		require.Equal(t, 2, r.code, r.stderr)
		require.Contains(t, r.stderr, `colour: unknown field`)
		r = runSkein(t, bin, "start", "-f", strings.Replace(badFile, "bad", "missing", 1))
		require.Equal(t, 2, r.code)
	})
	t.Run("bad usage exits 2", func(t *testing.T) {
		require.Equal(t, 2, runSkein(t, bin, "status").code)
		require.Equal(t, 2, runSkein(t, bin, "start", "--nope").code)
		require.Equal(t, 2, runSkein(t, bin, "verify", "x").code, "a command not built yet says so")
	})
	t.Run("unknown task exits 1", func(t *testing.T) {
		r := runSkein(t, bin, "status", "no-such-task")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "no-such-task")
	})

	r := runSkein(t, bin, "start", "-f", goodFile)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "it-cli\n", r.stdout)
	t.Cleanup(func() { _ = temporalClient(t).TerminateWorkflow(ctx, "it-cli", "", "test over") })
	r = runSkein(t, bin, "start", "-f", goodFile)
	require.Equal(t, 1, r.code, "a running task is not started twice")
	require.Contains(t, r.stderr, "already running")

	waitPhase(t, temporalClient(t), "it-cli", api.PhaseIncremental, 3*time.Minute)
	r = runSkein(t, bin, "status", "it-cli", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st), r.stdout)
	for _, k := range []string{"task", "phase", "tables", "applied_lsn", "lag_bytes", "lag_seconds", "retry", "last_error"} {
		require.Contains(t, st, k)
	}
	require.Equal(t, "incremental", st["phase"])
	table := st["tables"].([]any)[0].(map[string]any)
	for _, k := range []string{"source", "destination", "state", "rows_copied", "rows_estimate", "bytes_copied"} {
		require.Contains(t, table, k)
	}
	retry := st["retry"].(map[string]any)
	for _, k := range []string{"class", "since", "attempts", "window_minutes"} {
		require.Contains(t, retry, k)
	}

	r = runSkein(t, bin, "status", "it-cli")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "phase incremental")
	require.Contains(t, r.stdout, "shop.orders")
	require.Contains(t, r.stdout, "100%")

	// Search attributes: the phase is published (visibility is eventually consistent), and the
	// endpoints carry no secret.
	testharness.Eventually(t, 30*time.Second, func() error {
		r := runSkein(t, bin, "list", "--phase", "incremental")
		if r.code != 0 || !strings.Contains(r.stdout, "it-cli") {
			return fmt.Errorf("list --phase incremental: %d %s %s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	resp, err := temporalClient(t).ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: namespace(t), Query: "SkeinPhase = 'incremental' AND WorkflowId = 'it-cli'"})
	require.NoError(t, err)
	require.Len(t, resp.Executions, 1)
	attr := resp.Executions[0].SearchAttributes.GetIndexedFields()["SkeinSource"]
	require.NotNil(t, attr)
	require.Contains(t, string(attr.GetData()), "postgres@127.0.0.1:")

	r = runSkein(t, bin, "pause", "it-cli")
	require.Equal(t, 0, r.code, r.stderr)
	waitPhase(t, temporalClient(t), "it-cli", api.PhasePaused, time.Minute)
	require.Equal(t, 0, runSkein(t, bin, "resume", "it-cli", "--identity", "ops:alice").code)
	waitPhase(t, temporalClient(t), "it-cli", api.PhaseIncremental, time.Minute)
	// The history says who did what: skein names itself as the Temporal CLI does (or as told).
	me, err := user.Current()
	require.NoError(t, err)
	host, err := os.Hostname()
	require.NoError(t, err)
	// skein start gave the workflow its summary for the UI (never a secret).
	desc, err := temporalClient(t).DescribeWorkflowExecution(ctx, "it-cli", "")
	require.NoError(t, err)
	var summary string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(desc.GetExecutionConfig().GetUserMetadata().GetSummary(), &summary))
	require.Contains(t, summary, "Skein task it-cli: postgres@127.0.0.1:")
	ids := historyIdentities(t, "it-cli")
	require.Equal(t, "skein:"+me.Username+"@"+host, ids["started"])
	require.Equal(t, "skein:"+me.Username+"@"+host, ids["signal "+api.SignalPause])
	require.Equal(t, "ops:alice", ids["signal "+api.SignalResume])

	// Cutover: the source's sequences move on; skein sequences carries them over with an offset.
	src, err := srcPG.Connect(ctx, "shop")
	require.NoError(t, err)
	defer src.Close(ctx)
	for i := 0; i < 5; i++ {
		_, err := src.Exec(ctx, `INSERT INTO shop.customers (name) VALUES ('seq')`)
		require.NoError(t, err)
		_, err = src.Exec(ctx, `INSERT INTO shop.orders (customer_id) VALUES (1)`)
		require.NoError(t, err)
	}
	r = runSkein(t, bin, "sequences", "it-cli", "--offset", "100")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "2 sequences set")
	dst, err := dstPG.Connect(ctx, "target")
	require.NoError(t, err)
	defer dst.Close(ctx)
	for _, seq := range [][2]string{{"shop.customers_id_seq", "mart.customers_id_seq"}, {"shop.orders_id_seq", "mart.orders_id_seq"}} {
		var want, got int64
		require.NoError(t, src.QueryRow(ctx, "SELECT last_value FROM "+seq[0]).Scan(&want))
		require.NoError(t, dst.QueryRow(ctx, "SELECT last_value FROM "+seq[1]).Scan(&got))
		require.Equal(t, want+100, got, seq[1])
	}
	require.Equal(t, 2, runSkein(t, bin, "sequences", "it-cli", "--offset", "-1").code)

	// skein cutover: waits for the lag, pauses, sets sequences, says what to switch.
	_, err = src.Exec(ctx, `INSERT INTO shop.customers (name) SELECT 'before cutover' FROM generate_series(1, 50)`)
	require.NoError(t, err)
	r = runSkein(t, bin, "cutover", "it-cli", "--offset", "1000", "--timeout", "50s")
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "apply paused")
	require.Contains(t, r.stdout, "database target")
	require.Contains(t, r.stdout, "skein release it-cli")
	require.Equal(t, api.PhasePaused, status(t, temporalClient(t), "it-cli").Phase)
	require.NoError(t, compareAll(ctx, src, dst, shopChecks[:2]), "everything written before the cutover is applied")
	var want, got int64
	require.NoError(t, src.QueryRow(ctx, "SELECT last_value FROM shop.customers_id_seq").Scan(&want))
	require.NoError(t, dst.QueryRow(ctx, "SELECT last_value FROM mart.customers_id_seq").Scan(&got))
	require.Equal(t, want+1000, got)
	require.Equal(t, 2, runSkein(t, bin, "cutover", "it-cli").code, "a paused task is not cut over again")

	r = runSkein(t, bin, "release", "it-cli")
	require.Equal(t, 0, r.code, r.stderr)
	require.NoError(t, temporalClient(t).GetWorkflow(ctx, "it-cli", "").Get(ctx, nil))
	r = runSkein(t, bin, "status", "it-cli", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, `"phase":"released"`)
}

// historyIdentities reads who did what in a workflow's history: "started", "signal <name>" and
// "activity" (the last activity completed) to the identity recorded.
func historyIdentities(t *testing.T, id string) map[string]string {
	t.Helper()
	out := map[string]string{}
	it := temporalClient(t).GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		switch {
		case ev.GetWorkflowExecutionStartedEventAttributes() != nil:
			out["started"] = ev.GetWorkflowExecutionStartedEventAttributes().GetIdentity()
		case ev.GetWorkflowExecutionSignaledEventAttributes() != nil:
			a := ev.GetWorkflowExecutionSignaledEventAttributes()
			out["signal "+a.GetSignalName()] = a.GetIdentity()
		case ev.GetActivityTaskCompletedEventAttributes() != nil:
			out["activity"] = ev.GetActivityTaskCompletedEventAttributes().GetIdentity()
		}
	}
	return out
}

// TestReleaseTerminatedTask: terminating a task's workflow leaves its slot on the source;
// skein release still removes it.
func TestReleaseTerminatedTask(t *testing.T) {
	parallel(t)
	bin := buildSkein(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	run := startTask(t, c, shopSpec("it-terminated", srcPG, dstPG), nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	require.NoError(t, c.TerminateWorkflow(ctx, run.GetID(), "", "operator terminated it"))
	slots := func() int {
		var n int
		require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'skein_it_terminated'`).Scan(&n))
		return n
	}
	require.Equal(t, 1, slots(), "terminating leaves the slot")
	testharness.Eventually(t, 30*time.Second, func() error {
		r := runSkein(t, bin, "list")
		if !regexp.MustCompile(`it-terminated .*terminated .*LEFT OVER`).MatchString(r.stdout) ||
			!strings.Contains(r.stdout, "run skein release it-terminated") {
			return fmt.Errorf("list: %d %s %s", r.code, r.stdout, r.stderr)
		}
		return nil
	})

	r := runSkein(t, bin, "release", "it-terminated")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "released it-terminated")
	require.Zero(t, slots())
	var n int
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname = 'skein_it_terminated'`).Scan(&n))
	require.Zero(t, n)
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'skein'`).Scan(&n))
	require.Zero(t, n)
	require.Equal(t, 1, runSkein(t, bin, "release", "no-such-task").code)
	r = runSkein(t, bin, "list")
	require.NotContains(t, r.stdout, "LEFT OVER")
}

// TestStartThroughTheTemporalClientNamesBadFields: a task started with JSON as `temporal workflow
// start --input` sends it fails at once naming what does not fit (an unknown field, a wrong type),
// in the words skein start uses; nothing else runs.
func TestStartThroughTheTemporalClientNamesBadFields(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	c := startWorker(t, t.TempDir())
	for _, tc := range []struct{ id, doc, want string }{
		{"it-json-unknown", `{"name":"it-json-unknown","conflict_mod":"ignore","source":{"host":"127.0.0.1","database":"d","user":"u"},"destination":{"host":"127.0.0.1","database":"d","user":"u"},"objects":[{"schema":"public"}]}`,
			"conflict_mod: unknown field"},
		{"it-json-type", `{"name":"it-json-type","source":{"host":"127.0.0.1","port":"x","database":"d","user":"u"},"destination":{"host":"127.0.0.1","database":"d","user":"u"},"objects":[{"schema":"public","tables":[{"name":"t","colums":{}}]}]}`,
			"source.port: expected a whole number, got a string"},
	} {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: tc.id, TaskQueue: api.TaskQueue}, api.WorkflowName, json.RawMessage(tc.doc))
		require.NoError(t, err)
		err = run.Get(ctx, nil)
		require.ErrorContains(t, err, tc.want)
		require.Equal(t, 0, countEvents(t, c, tc.id, enums.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED), "nothing ran")
	}
}
