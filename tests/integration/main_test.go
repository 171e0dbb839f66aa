// Package integration runs Skein end to end: a real Temporal dev server, real PostgreSQL clusters,
// an in-process worker, and tasks started through the Temporal client as users start them.
package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/secrets"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/temporalx"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

var devServer *testsuite.DevServer

// binDir holds the binaries the tests build (builtBinary), once per run.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("integration tests skipped in -short mode")
		os.Exit(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	names := make([]string, namespaceCount)
	namespaces = make(chan string, len(names))
	for i := range names {
		names[i] = fmt.Sprintf("it-%d", i+1)
		namespaces <- names[i]
	}
	var err error
	devServer, err = testharness.StartTemporal(ctx, names...)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start Temporal dev server:", err)
		os.Exit(1)
	}
	if binDir, err = os.MkdirTemp("", "skein-test-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, "binaries folder:", err)
		os.Exit(1)
	}
	code := m.Run()
	nsClients.Range(func(_, c any) bool {
		c.(client.Client).Close()
		return true
	})
	_ = devServer.Stop()
	_ = os.RemoveAll(binDir)
	os.Exit(code)
}

// namespaces holds the dev server's namespaces besides "default": each test takes a fresh one
// (isolate), so that tests running at once never meet, and no test meets what an earlier one left
// (a workflow, a child, an activity still scheduled).
var namespaces chan string

// namespaceCount is how many namespaces the dev server starts with (cheap: about 10 ms each).
const namespaceCount = 120

var (
	testNamespaces sync.Map // top-level test name → its namespace, while it runs in parallel
	nsClients      sync.Map // namespace → client.Client
)

// parallel runs the test beside the other parallel tests (after the serial ones, -parallel at
// once) in a namespace of its own (isolate). A test is parallel when it holds no timing assertion
// that a busy machine could break.
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
	isolate(t)
}

// isolate gives the test a fresh Temporal namespace: startWorker, startTask, temporalClient and
// the binaries the test runs (temporalEnv) use it.
func isolate(t *testing.T) {
	t.Helper()
	select {
	case ns := <-namespaces:
		testNamespaces.Store(t.Name(), ns)
		t.Cleanup(func() { testNamespaces.Delete(t.Name()) })
	default:
		t.Fatalf("no fresh Temporal namespace left: raise namespaceCount (%d)", namespaceCount)
	}
}

// namespace is the test's Temporal namespace: its own (isolate), else "default".
func namespace(t testing.TB) string {
	top, _, _ := strings.Cut(t.Name(), "/")
	if ns, ok := testNamespaces.Load(top); ok {
		return ns.(string)
	}
	return "default"
}

// temporalClient is a client of the dev server in the test's namespace.
func temporalClient(t testing.TB) client.Client {
	t.Helper()
	ns := namespace(t)
	if ns == "default" {
		return devServer.Client()
	}
	if c, ok := nsClients.Load(ns); ok {
		return c.(client.Client)
	}
	c, err := client.Dial(client.Options{HostPort: devServer.FrontendHostPort(), Namespace: ns,
		Logger: temporalx.NewZapLogger(zap.NewNop()), DataConverter: temporalx.DataConverter()})
	require.NoError(t, err)
	if prev, loaded := nsClients.LoadOrStore(ns, c); loaded {
		c.Close()
		return prev.(client.Client)
	}
	return c
}

// temporalEnv is the environment a skein binary the test runs needs to reach the dev server in
// the test's namespace.
func temporalEnv(t testing.TB) []string {
	return []string{"TEMPORAL_ADDRESS=" + devServer.FrontendHostPort(), "TEMPORAL_NAMESPACE=" + namespace(t)}
}

// startWorker runs a worker on the skein task queue for the test's duration.
func startWorker(t *testing.T, secretsDir string) client.Client {
	t.Helper()
	c := temporalClient(t)
	w := worker.New(c, api.TaskQueue, activities.WorkerOptions())
	workflows.Register(w)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	w.RegisterActivity(&activities.Activities{
		Open:   dbconn.Opener{Secrets: secrets.Resolver{Dir: secretsDir}},
		Log:    log,
		Client: c,
	})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	return c
}

// startTask starts SyncTask as `skein start` does, with fast test knobs.
func startTask(t *testing.T, c client.Client, s spec.Spec, carry *workflows.Carry) client.WorkflowRun {
	t.Helper()
	s.ApplyDefaults()
	require.NoError(t, s.Validate())
	if carry == nil {
		carry = &workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 500 * time.Millisecond}}
	}
	run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: s.Name, TaskQueue: api.TaskQueue,
	}, api.WorkflowName, s, carry)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = c.TerminateWorkflow(context.Background(), run.GetID(), "", "test over")
	})
	return run
}

func status(t *testing.T, c client.Client, id string) api.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(ctx, id, "", api.QueryStatus)
	require.NoError(t, err)
	var st api.Status
	require.NoError(t, v.Get(&st))
	return st
}

// waitPhase polls the status query until the task reaches phase.
func waitPhase(t *testing.T, c client.Client, id, phase string, timeout time.Duration) api.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var st api.Status
	for time.Now().Before(deadline) {
		st = status(t, c, id)
		if st.Phase == phase {
			return st
		}
		if st.Phase == api.PhaseFailed {
			t.Fatalf("task %s failed before phase %s: %s", id, phase, st.LastError)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("task %s did not reach phase %s in %s; status: %+v\n%s", id, phase, timeout, st, describe(c, id))
	return st
}

// describe tells what a stuck task is doing: its run and pending activities.
func describe(c client.Client, id string) string {
	d, err := c.DescribeWorkflowExecution(context.Background(), id, "")
	if err != nil {
		return "describe: " + err.Error()
	}
	out := fmt.Sprintf("run %s, history length %d, status %s\n", d.WorkflowExecutionInfo.Execution.RunId,
		d.WorkflowExecutionInfo.HistoryLength, d.WorkflowExecutionInfo.Status)
	for _, pa := range d.PendingActivities {
		out += fmt.Sprintf("pending %s: state %s attempt %d last heartbeat %s last failure %v\n",
			pa.ActivityType.GetName(), pa.State, pa.Attempt, pa.LastHeartbeatTime.AsTime().Format(time.RFC3339Nano), pa.LastFailure)
	}
	return out
}

// recordHistory writes the workflow's history (every run of it) to workflows/testdata when
// SKEIN_RECORD_HISTORIES=1, for the replay test that keeps workflow changes compatible with
// running tasks.
func recordHistory(t *testing.T, c client.Client, id, name string) {
	t.Helper()
	if os.Getenv("SKEIN_RECORD_HISTORIES") != "1" || strings.HasSuffix(t.Name(), "/"+string(oracleDest)) {
		return
	}
	ctx := context.Background()
	iter := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		events = append(events, ev)
	}
	b, err := protojson.Marshal(&historypb.History{Events: events})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("..", "..", "workflows", "testdata", name+".json"), b, 0o644))
}
