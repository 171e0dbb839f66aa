package workflows

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/temporalx"
)

func testSpec() spec.Spec {
	s := spec.Spec{
		Name:        "wf-test",
		Source:      spec.Endpoint{Host: "src", Database: "shop", User: "u"},
		Destination: spec.Endpoint{Host: "dst", Database: "shop", User: "u"},
		Objects:     []spec.Object{{Schema: "public"}},
	}
	s.ApplyDefaults()
	return s
}

var (
	tOrders = spec.TableMap{Source: spec.QName{Schema: "public", Name: "orders"}, Dest: spec.QName{Schema: "public", Name: "orders"}}
	tItems  = spec.TableMap{Source: spec.QName{Schema: "public", Name: "items"}, Dest: spec.QName{Schema: "public", Name: "items"}}
)

// newEnv returns a test environment whose activities succeed, with the load of two tables in three
// chunks. over replaces the mock of the named activities (a value or a function with the
// activity's signature); "Apply" has no default.
func newEnv(t *testing.T, over map[string]any) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(temporalx.NewZapLogger(zap.NewNop()))
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{EnableSessionWorker: true})
	env.SetTestTimeout(30 * time.Second)
	env.RegisterWorkflowWithOptions(SyncTask, workflow.RegisterOptions{Name: api.WorkflowName})
	env.RegisterActivity(&activities.Activities{})
	defaults := map[string][]any{
		"Precheck":           {[]api.Item{{ID: "wal_level", Level: api.Error, Passed: true}}, nil},
		"ResolveTables":      {[]spec.TableMap{tItems, tOrders}, nil},
		"PreparePublication": {nil},
		"OpenSnapshot":       {api.SlotSnapshot{SnapshotName: "00000003-1", ConsistentPoint: "0/1"}, nil},
		"HoldSnapshot":       {nil}, // returns at once: the test clock only skips ahead while no activity runs
		"SchemaPreData":      {api.SchemaReport{Created: []string{"table public.orders"}}, nil},
		"PlanLoad": {[]api.TablePlan{
			{Table: tItems, RowsEstimate: 10, Chunks: []api.Chunk{{ID: "public.items#0", Table: tItems}}},
			{Table: tOrders, RowsEstimate: 1000, Chunks: []api.Chunk{{ID: "public.orders#0", Table: tOrders}, {ID: "public.orders#1", Table: tOrders}}},
		}, nil},
		"CopyChunk": {func(_ context.Context, in api.CopyChunkInput) (api.Result, error) {
			if in.Chunk.Table.Source.Name == "orders" {
				return api.Result{Rows: 600, Bytes: 6000}, nil
			}
			return api.Result{Rows: 10, Bytes: 100}, nil
		}},
		"Verify":            {[]api.TableResult{{Source: "public.orders", Equal: true}}, nil},
		"SchemaPostData":    {api.SchemaReport{}, nil},
		"BuildTables":       {api.SchemaReport{}, nil},
		"EndSnapshot":       {nil},
		"EnsureBookkeeping": {nil},
		"Release":           {nil},
	}
	argc := map[string]int{"PreparePublication": 3}
	for name, ret := range over {
		defaults[name] = []any{ret}
	}
	for name, ret := range defaults {
		n := argc[name]
		if n == 0 {
			n = 2
		}
		args := make([]any, n)
		for i := range args {
			args[i] = mock.Anything
		}
		env.OnActivity(name, args...).Return(ret...).Maybe()
	}
	return env
}

// requireFailure requires the workflow to have failed with an application error of type typ
// whose text contains want.
func requireFailure(t *testing.T, env *testsuite.TestWorkflowEnvironment, typ, want string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, typ, appErr.Type())
	require.Contains(t, appErr.Error(), want)
}

func queryStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment) api.Status {
	t.Helper()
	v, err := env.QueryWorkflow(api.QueryStatus)
	require.NoError(t, err)
	var st api.Status
	require.NoError(t, v.Get(&st))
	return st
}

func holdUntilCancelled(ctx context.Context, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

// applyUntilCancelled is an Apply that streams until pause or release cancels it, signalling
// release (or running onStart) on its first run.
func applyUntilCancelled(onStart func(run int)) func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
	run := 0
	return func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
		run++
		onStart(run)
		<-ctx.Done()
		return api.ApplyProgress{AppliedLSN: "0/10"}, ctx.Err()
	}
}

func TestSyncTaskRunsEveryPhaseAndReleases(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var seen []api.Status
	env = newEnv(t, map[string]any{"HoldSnapshot": holdUntilCancelled, "Apply": applyUntilCancelled(func(int) {
		env.RegisterDelayedCallback(func() {
			seen = append(seen, queryStatus(t, env))
			env.SignalWorkflow(api.SignalApplyProgress, api.ApplyProgress{AppliedLSN: "0/AB", LagBytes: 42, LagSeconds: 0.5})
			env.SignalWorkflow(api.SignalRelease, nil)
		}, time.Second)
	})})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	require.Len(t, seen, 1)
	require.Equal(t, api.PhaseIncremental, seen[0].Phase)
	st := queryStatus(t, env)
	require.Equal(t, api.PhaseReleased, st.Phase)
	require.Equal(t, "0/AB", st.AppliedLSN)
	require.Len(t, st.Tables, 2)
	byName := map[string]api.TableStatus{}
	for _, ts := range st.Tables {
		byName[ts.Source] = ts
	}
	require.Equal(t, api.TableStatus{Source: "public.orders", Destination: "public.orders", State: api.TableDone, RowsCopied: 1200, RowsEstimate: 1200, BytesCopied: 12000, Chunks: 2, ChunksDone: 2}, byName["public.orders"])
	require.Equal(t, int64(10), byName["public.items"].RowsCopied)
	env.AssertActivityNumberOfCalls(t, "CopyChunk", 3)
	env.AssertActivityNumberOfCalls(t, "Release", 1)
	env.AssertActivityNumberOfCalls(t, "SchemaPostData", 1)
}

func TestSyncTaskTakesOnlyTheSpec(t *testing.T) {
	// `temporal workflow start --input-file task.json` passes the spec alone.
	var env *testsuite.TestWorkflowEnvironment
	env = newEnv(t, map[string]any{"Apply": applyUntilCancelled(func(int) {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
	})})
	env.ExecuteWorkflow(api.WorkflowName, testSpec())
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, api.PhaseReleased, queryStatus(t, env).Phase)
}

func TestSyncTaskRejectsAnInvalidSpec(t *testing.T) {
	env := newEnv(t, nil)
	s := testSpec()
	s.Source.Database = "my-shop"
	env.ExecuteWorkflow(SyncTask, s, nil)
	requireFailure(t, env, "invalid_spec", "source.database")
	env.AssertActivityNumberOfCalls(t, "Precheck", 0)
}

func TestSyncTaskStopsOnAFailedPrecheck(t *testing.T) {
	env := newEnv(t, map[string]any{"Precheck": func(context.Context, spec.Spec) ([]api.Item, error) {
		return []api.Item{
			{ID: "wal_level", Level: api.Error, Passed: false, Detail: "wal_level is replica", Fix: "ALTER SYSTEM SET wal_level = logical"},
			{ID: "primary_keys", Level: api.Warning, Passed: false, Detail: "t has no key"},
		}, nil
	}})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, env.GetWorkflowError(), &appErr)
	require.Equal(t, "precheck_failed", appErr.Type())
	st := queryStatus(t, env)
	require.Equal(t, api.PhasePrecheckFailed, st.Phase)
	require.Contains(t, st.LastError, "wal_level")
	require.Contains(t, st.LastError, "primary_keys")
	env.AssertActivityNumberOfCalls(t, "OpenSnapshot", 0)
}

func TestSyncTaskIgnoredWarningLetsItGoOn(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	env = newEnv(t, map[string]any{
		"Precheck": func(context.Context, spec.Spec) ([]api.Item, error) {
			return []api.Item{{ID: "primary_keys", Level: api.Warning, Passed: false, Detail: "t has no key"}}, nil
		},
		"Apply": applyUntilCancelled(func(int) {
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
		}),
	})
	s := testSpec()
	s.IgnorePrecheck = []string{"primary_keys"}
	env.ExecuteWorkflow(SyncTask, s, nil)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, api.PhaseReleased, queryStatus(t, env).Phase)
}

func TestRetryWindows(t *testing.T) {
	connErr := temporal.NewNonRetryableApplicationError("connect: connection refused", string(api.Connection), nil)
	otherErr := temporal.NewNonRetryableApplicationError("insert: duplicate key", string(api.Other), nil)
	tests := []struct {
		name        string
		err         error
		failures    int  // CopyChunk fails this many times before it succeeds
		wantFailed  bool // the task reaches failed (and is resumed by the test)
		wantAttempt int  // attempts shown in status.retry while failed
	}{
		{"connection errors inside the window recover", connErr, 5, false, 0},
		{"other errors inside the window recover", otherErr, 3, false, 0},
		{"other errors past the 10 minute window fail, resume recovers", otherErr, 1000, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env *testsuite.TestWorkflowEnvironment
			calls := 0
			var failedSeen *api.Status
			env = newEnv(t, map[string]any{
				"CopyChunk": func(context.Context, api.CopyChunkInput) (api.Result, error) {
					calls++
					if calls <= tt.failures {
						return api.Result{}, tt.err
					}
					return api.Result{Rows: 1}, nil
				},
				"Apply": applyUntilCancelled(func(int) {
					env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
				}),
			})
			if tt.wantFailed {
				// Once failed, look at the status and resume (the chunk then succeeds).
				env.RegisterDelayedCallback(func() {
					st := queryStatus(t, env)
					failedSeen = &st
					calls = tt.failures
					env.SignalWorkflow(api.SignalResume, nil)
				}, 30*time.Minute)
			}
			env.ExecuteWorkflow(SyncTask, testSpec(), nil)
			require.NoError(t, env.GetWorkflowError())
			st := queryStatus(t, env)
			require.Equal(t, api.PhaseReleased, st.Phase)
			require.Equal(t, api.RetryState{}, st.Retry, "a success ends the streak")
			require.Empty(t, st.LastError, "and its error is no longer the last one")
			require.Equal(t, tt.err.(*temporal.ApplicationError).Message(), st.LastRecoveredError)
			if tt.wantFailed {
				require.NotNil(t, failedSeen)
				require.Equal(t, api.PhaseFailed, failedSeen.Phase)
				require.Equal(t, "other", failedSeen.Retry.Class)
				require.Equal(t, 10, failedSeen.Retry.WindowMinutes)
				require.Greater(t, failedSeen.Retry.Attempts, 5)
				require.Equal(t, "insert: duplicate key", failedSeen.LastError, "the activity's message, without the SDK's suffix")
			}
		})
	}
}

// TestApplyAfterAFailureKnowsIt: each apply run is a single activity attempt and the workflow
// retries in its own loop, so the run after a failed one is told how many failed before it (it
// then applies its first changes statement by statement, naming the exact change).
func TestApplyAfterAFailureKnowsIt(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var seen []int
	env = newEnv(t, map[string]any{
		"Apply": func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
			seen = append(seen, in.FailedAttempts)
			if len(seen) <= 2 {
				return api.ApplyProgress{}, temporal.NewNonRetryableApplicationError("update t key (id=1): check violated", string(api.Other), nil)
			}
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
			<-ctx.Done()
			return api.ApplyProgress{}, ctx.Err()
		},
	})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []int{0, 1, 2}, seen, "the first run knows of no failure, the next ones count them")
}

// TestSameFailureAfterProgressKeepsTheStreak: each apply run applies something (a progress
// report) and then fails on the same change with the same error; the progress does not start a
// new streak, so the task fails when the window ends instead of retrying for ever.
func TestSameFailureAfterProgressKeepsTheStreak(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	runs := 0
	var failedSeen *api.Status
	env = newEnv(t, map[string]any{
		"Apply": func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
			runs++
			if failedSeen != nil {
				<-ctx.Done()
				return api.ApplyProgress{}, ctx.Err()
			}
			env.SignalWorkflow(api.SignalApplyProgress, api.ApplyProgress{AppliedLSN: fmt.Sprintf("0/%X", runs)})
			return api.ApplyProgress{}, temporal.NewNonRetryableApplicationError(`insert into t: column "extra" does not exist`, string(api.Other), nil)
		},
	})
	env.RegisterDelayedCallback(func() {
		st := queryStatus(t, env)
		failedSeen = &st
		env.SignalWorkflow(api.SignalRelease, nil)
	}, 3*time.Hour)
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())
	require.NotNil(t, failedSeen)
	require.Equal(t, api.PhaseFailed, failedSeen.Phase, "the window of the streak ended: %+v", failedSeen.Retry)
	require.Equal(t, `insert into t: column "extra" does not exist`, failedSeen.LastError)
	require.Greater(t, failedSeen.Retry.Attempts, 5, "every run counted in one streak")
}

func TestPauseStopsApplyAndResumeRestartsIt(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var pausedSeen api.Status
	env = newEnv(t, map[string]any{"Apply": applyUntilCancelled(func(run int) {
		switch run {
		case 1:
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow(api.SignalPause, nil)
				env.RegisterDelayedCallback(func() {
					pausedSeen = queryStatus(t, env)
					env.SignalWorkflow(api.SignalResume, nil)
				}, 2*time.Second)
			}, time.Second)
		case 2:
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
		}
	})})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, api.PhasePaused, pausedSeen.Phase)
	env.AssertActivityNumberOfCalls(t, "Apply", 2)
	require.Equal(t, api.PhaseReleased, queryStatus(t, env).Phase)
}

// TestLostSnapshotReloadsUnfinishedTables: a chunk finds the load's snapshot gone (its holder
// ended); the tables not completely loaded are reset and load again in a new snapshot from a
// temporary slot, those completely loaded keep theirs, and the task's stream skips the reloaded
// tables' changes committed before the new snapshot's consistent point.
func TestLostSnapshotReloadsUnfinishedTables(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var snapshots []api.SnapshotInput
	var reset []api.ResetLoadInput
	var skip []api.SkipBefore
	var copies []string // chunk@snapshot, in order
	var builds []string // table after n copies
	lostOnce := false
	env = newEnv(t, map[string]any{
		"OpenSnapshot": func(_ context.Context, in api.SnapshotInput) (api.SlotSnapshot, error) {
			snapshots = append(snapshots, in)
			if len(snapshots) == 1 {
				return api.SlotSnapshot{SnapshotName: "00000003-1", ConsistentPoint: "0/1"}, nil
			}
			return api.SlotSnapshot{SnapshotName: "00000003-2", ConsistentPoint: "0/5"}, nil
		},
		"CopyChunk": func(_ context.Context, in api.CopyChunkInput) (api.Result, error) {
			copies = append(copies, fmt.Sprintf("%s@%s/%d", in.Chunk.ID, in.Snapshot, in.Chunk.Generation))
			if in.Chunk.ID == "public.orders#1" && !lostOnce {
				lostOnce = true
				return api.Result{}, temporal.NewNonRetryableApplicationError("import snapshot: gone", api.ErrSnapshotLost, nil)
			}
			if in.Chunk.Table.Source.Name == "orders" {
				return api.Result{Rows: 600, Bytes: 6000}, nil
			}
			return api.Result{Rows: 10, Bytes: 100}, nil
		},
		"ResetLoad": func(_ context.Context, in api.ResetLoadInput) error {
			reset = append(reset, in)
			return nil
		},
		"BuildTables": func(_ context.Context, in api.BuildInput) (api.SchemaReport, error) {
			for _, tm := range in.Tables {
				builds = append(builds, fmt.Sprintf("%s after %d copies", tm.Source, len(copies)))
			}
			return api.SchemaReport{}, nil
		},
		"Apply": func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
			skip = in.SkipBefore
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
			<-ctx.Done()
			return api.ApplyProgress{}, ctx.Err()
		},
	})
	verifies := 0
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, req api.VerifyRequest) (api.VerifyReport, error) {
		verifies++
		return api.VerifyReport{Task: req.Task, Equal: true}, nil
	}, workflow.RegisterOptions{Name: api.VerifyWorkflowName})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())

	require.ElementsMatch(t, []string{"public.orders#0@00000003-1/0", "public.orders#1@00000003-1/0", "public.items#0@00000003-1/0"}, copies[:3])
	require.ElementsMatch(t, []string{"public.orders#0@00000003-2/1", "public.orders#1@00000003-2/1"}, copies[3:],
		"orders loads again in the new snapshot as its generation 1, items does not")
	require.Len(t, snapshots, 2)
	require.False(t, snapshots[0].Temporary)
	require.True(t, snapshots[1].Temporary && snapshots[1].WithSlot, "the new snapshot comes from a temporary slot")
	require.Len(t, reset, 1)
	require.Equal(t, []spec.TableMap{tOrders}, reset[0].Tables, "only the unfinished table is reset")
	require.Equal(t, []int{1}, reset[0].Generations, "chunks of generation 0 still running must not commit")
	require.Equal(t, []api.SkipBefore{{Table: tOrders.Source, LSN: "0/5"}}, skip)
	require.Len(t, builds, 2, "each table is built once")
	require.Contains(t, builds, "public.orders after 5 copies", "the reloaded table is built once its new load is complete")
	st := queryStatus(t, env)
	for _, ts := range st.Tables {
		switch ts.Source {
		case "public.orders":
			require.Equal(t, api.TableStatus{Source: "public.orders", Destination: "public.orders", State: api.TableDone, RowsCopied: 1200,
				RowsEstimate: 1200, BytesCopied: 12000, Chunks: 2, ChunksDone: 2, Reloads: 1}, ts)
		case "public.items":
			require.Equal(t, 0, ts.Reloads)
			require.Equal(t, int64(10), ts.RowsCopied)
		}
	}
	env.AssertActivityNumberOfCalls(t, "Verify", 0) // not against a snapshot: the tables come from two
	require.Equal(t, 1, verifies, "the task verifies while it streams instead")
}

// TestSmallTablesLoadInBatches: tables of one small chunk are copied by one CopyChunks activity
// per batch, and each table's progress comes from its own result.
func TestSmallTablesLoadInBatches(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	tables := []spec.TableMap{tItems, tOrders}
	var plans []api.TablePlan
	for i := 0; i < 3; i++ {
		tm := spec.TableMap{Source: spec.QName{Schema: "public", Name: fmt.Sprintf("small%d", i)}, Dest: spec.QName{Schema: "public", Name: fmt.Sprintf("small%d", i)}}
		tables = append(tables, tm)
		plans = append(plans, api.TablePlan{Table: tm, RowsEstimate: int64(i), Bytes: 8192, Chunks: []api.Chunk{{ID: tm.Source.String() + "#0", Table: tm}}})
	}
	plans = append(plans, api.TablePlan{Table: tOrders, RowsEstimate: 1000, Bytes: 1 << 30, Chunks: []api.Chunk{{ID: "public.orders#0", Table: tOrders}}},
		api.TablePlan{Table: tItems, RowsEstimate: 10, Bytes: 1 << 30, Chunks: []api.Chunk{{ID: "public.items#0", Table: tItems}}})
	var batches [][]string
	copyChunks := func(_ context.Context, in api.CopyChunksInput) ([]api.Result, error) {
		var ids []string
		res := make([]api.Result, len(in.Chunks))
		for i, c := range in.Chunks {
			ids = append(ids, c.ID)
			res[i] = api.Result{Rows: int64(100 + i), Bytes: 1000}
		}
		batches = append(batches, ids)
		return res, nil
	}
	env = newEnv(t, map[string]any{
		"ResolveTables": func(context.Context, spec.Spec) ([]spec.TableMap, error) { return tables, nil },
		"PlanLoad":      func(context.Context, api.SchemaInput) ([]api.TablePlan, error) { return plans, nil },
		"CopyChunks":    copyChunks,
		// With schema sync the batch builds its tables' keys too.
		"CopyChunksAndBuild": func(ctx context.Context, in api.CopyAndBuildInput) (api.CopiedAndBuilt, error) {
			res, err := copyChunks(ctx, in.CopyChunksInput)
			return api.CopiedAndBuilt{Results: res}, err
		},
		"Apply": applyUntilCancelled(func(int) {
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
		}),
	})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, [][]string{{"public.small2#0", "public.small1#0", "public.small0#0"}}, batches, "one batch, largest first")
	env.AssertActivityNumberOfCalls(t, "CopyChunk", 2) // the two large tables
	st := queryStatus(t, env)
	rows := map[string]int64{}
	for _, ts := range st.Tables {
		require.Equal(t, api.TableDone, ts.State, ts.Source)
		rows[ts.Source] = ts.RowsCopied
	}
	require.Equal(t, map[string]int64{"public.small2": 100, "public.small1": 101, "public.small0": 102, "public.orders": 600, "public.items": 10}, rows)
}

// TestVerifyAfterLostSnapshotRunsWhileStreaming: the snapshot's holder ends while the comparison
// after the load runs; the task does not retry a comparison that can never import the snapshot,
// it goes on and, once it streams, starts its Verify workflow (which re-checks what changes).
func TestVerifyAfterLostSnapshotRunsWhileStreaming(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var verifyRequests []api.VerifyRequest
	var applyStarted bool
	env = newEnv(t, map[string]any{
		"Verify": func(context.Context, api.SchemaInput) ([]api.TableResult, error) {
			return nil, temporal.NewNonRetryableApplicationError("import snapshot: gone", api.ErrSnapshotLost, nil)
		},
		"Apply": func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
			applyStarted = true
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
			<-ctx.Done()
			return api.ApplyProgress{}, ctx.Err()
		},
	})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, req api.VerifyRequest) (api.VerifyReport, error) {
		require.False(t, applyStarted, "the verification starts before the first apply run")
		verifyRequests = append(verifyRequests, req)
		return api.VerifyReport{Task: req.Task, Equal: true}, nil
	}, workflow.RegisterOptions{Name: api.VerifyWorkflowName})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())
	env.AssertActivityNumberOfCalls(t, "Verify", 1)
	require.Equal(t, []api.VerifyRequest{{Task: "wf-test"}}, verifyRequests)
	require.True(t, applyStarted)
	st := queryStatus(t, env)
	require.Contains(t, st.LastError, "the task compares the tables once it streams (workflow wf-test-verify)")
	require.Equal(t, api.PhaseReleased, st.Phase)
}

// TestSnapshotLostBeforeTheLoad: the holder ends while the schema is read (or the load planned),
// before any chunk is copied; every table then loads in a new snapshot, read from there, and the
// stream skips the changes that snapshot holds.
func TestSnapshotLostBeforeTheLoad(t *testing.T) {
	for _, step := range []string{"SchemaPreData", "PlanLoad"} {
		t.Run(step, func(t *testing.T) {
			var env *testsuite.TestWorkflowEnvironment
			var snapshots, reads []string
			var skip []api.SkipBefore
			opens := 0
			lost := func(in api.SchemaInput) bool {
				reads = append(reads, in.Snapshot)
				return len(reads) == 1
			}
			over := map[string]any{
				"OpenSnapshot": func(_ context.Context, in api.SnapshotInput) (api.SlotSnapshot, error) {
					opens++
					name := fmt.Sprintf("00000003-%d", opens)
					snapshots = append(snapshots, fmt.Sprintf("%s temporary=%v", name, in.Temporary))
					return api.SlotSnapshot{SnapshotName: name, ConsistentPoint: fmt.Sprintf("0/%d", opens)}, nil
				},
				"ResetLoad": func(context.Context, api.ResetLoadInput) error { return nil },
				"Apply": func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
					skip = in.SkipBefore
					env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
					<-ctx.Done()
					return api.ApplyProgress{}, ctx.Err()
				},
			}
			gone := temporal.NewNonRetryableApplicationError("import snapshot: gone", api.ErrSnapshotLost, nil)
			if step == "SchemaPreData" {
				over[step] = func(_ context.Context, in api.SchemaInput) (api.SchemaReport, error) {
					if lost(in) {
						return api.SchemaReport{}, gone
					}
					return api.SchemaReport{}, nil
				}
			} else {
				over[step] = func(_ context.Context, in api.SchemaInput) ([]api.TablePlan, error) {
					if lost(in) {
						return nil, gone
					}
					return []api.TablePlan{{Table: tOrders, RowsEstimate: 10, Chunks: []api.Chunk{{ID: "public.orders#0", Table: tOrders}}}}, nil
				}
			}
			env = newEnv(t, over)
			env.RegisterWorkflowWithOptions(func(ctx workflow.Context, req api.VerifyRequest) (api.VerifyReport, error) {
				return api.VerifyReport{Task: req.Task, Equal: true}, nil
			}, workflow.RegisterOptions{Name: api.VerifyWorkflowName})
			env.ExecuteWorkflow(SyncTask, testSpec(), nil)
			require.NoError(t, env.GetWorkflowError())
			require.Equal(t, []string{"00000003-1 temporary=false", "00000003-2 temporary=true"}, snapshots)
			require.Equal(t, []string{"00000003-1", "00000003-2"}, reads, "read again in the new snapshot")
			require.ElementsMatch(t, []api.SkipBefore{{Table: tItems.Source, LSN: "0/2"}, {Table: tOrders.Source, LSN: "0/2"}}, skip)
			require.Equal(t, api.PhaseReleased, queryStatus(t, env).Phase)
		})
	}
}

// TestSnapshotSessionLostWhileOpening: the worker of the snapshot's session goes away while the
// snapshot is opened (its activities are canceled with the session): the task opens it again in
// a new session instead of failing with "canceled".
func TestSnapshotSessionLostWhileOpening(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	opens := 0
	env = newEnv(t, map[string]any{
		"OpenSnapshot": func(_ context.Context, in api.SnapshotInput) (api.SlotSnapshot, error) {
			opens++
			if opens == 1 {
				return api.SlotSnapshot{}, temporal.NewCanceledError()
			}
			return api.SlotSnapshot{SnapshotName: "00000003-1", ConsistentPoint: "0/1"}, nil
		},
		"Apply": func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
			<-ctx.Done()
			return api.ApplyProgress{}, ctx.Err()
		},
	})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 2, opens)
	require.Equal(t, api.PhaseReleased, queryStatus(t, env).Phase)
}

// TestVerifyRetriesConnectionErrors: a verification whose activities meet a restarting server
// tries again instead of failing at the first connection error.
func TestVerifyRetriesConnectionErrors(t *testing.T) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(temporalx.NewZapLogger(zap.NewNop()))
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Verify, workflow.RegisterOptions{Name: api.VerifyWorkflowName})
	env.RegisterActivity(&activities.Activities{})
	describes := 0
	env.OnActivity("DescribeTask", mock.Anything, mock.Anything).Return(func(context.Context, string) (api.TaskInfo, error) {
		describes++
		if describes < 3 {
			return api.TaskInfo{}, temporal.NewNonRetryableApplicationError("connect to src: refused", string(api.Connection), nil)
		}
		return api.TaskInfo{Spec: testSpec()}, nil
	})
	env.OnActivity("ResolveTables", mock.Anything, mock.Anything).Return([]spec.TableMap{tOrders}, nil)
	env.OnActivity("VerifyTask", mock.Anything, mock.Anything).Return([]api.TableResult{{Source: "public.orders", Equal: true}}, nil)
	env.ExecuteWorkflow(api.VerifyWorkflowName, api.VerifyRequest{Task: "wf-test"})
	require.NoError(t, env.GetWorkflowError())
	var rep api.VerifyReport
	require.NoError(t, env.GetWorkflowResult(&rep))
	require.True(t, rep.Equal)
	require.Equal(t, 3, describes)
}

// TestKeysAreBuiltAsEachTableCompletes: with schema sync, a table's keys and indexes are built as
// soon as its last chunk commits, ahead of the chunks still queued and in the same parallelism, and
// its foreign keys once every table they reference has its keys (two tables that reference each
// other in one step); a partitioned table, and a table that references one, wait for the post-data
// step, which is told which tables are built and linked. Without schema sync nothing is built.
func TestKeysAreBuiltAsEachTableCompletes(t *testing.T) {
	tPart := spec.TableMap{Source: spec.QName{Schema: "public", Name: "events"}, Dest: spec.QName{Schema: "public", Name: "events"}}
	tLast := spec.TableMap{Source: spec.QName{Schema: "public", Name: "last"}, Dest: spec.QName{Schema: "public", Name: "last"}}
	tables := []spec.TableMap{tItems, tOrders, tPart, tLast}
	plans := []api.TablePlan{
		{Table: tItems, RowsEstimate: 10, References: []spec.QName{tOrders.Source}, Chunks: []api.Chunk{{ID: "public.items#0", Table: tItems}}},
		{Table: tPart, RowsEstimate: 500, Partitioned: true, Chunks: []api.Chunk{{ID: "public.events#0", Table: tPart}}},
		{Table: tOrders, RowsEstimate: 1000, Bytes: 1 << 30, References: []spec.QName{tItems.Source, {Schema: "other", Name: "unselected"}},
			Chunks: []api.Chunk{{ID: "public.orders#0", Table: tOrders}, {ID: "public.orders#1", Table: tOrders}}},
		{Table: tLast, RowsEstimate: 1, Bytes: 1 << 30, References: []spec.QName{tLast.Source, tPart.Source}, Chunks: []api.Chunk{{ID: "public.last#0", Table: tLast}}},
	}
	for _, tc := range []struct {
		name   string
		schema bool
		want   []string
	}{
		// The small tables' batch goes last.
		{"with schema sync", true, []string{"copy public.orders#0", "copy public.orders#1", "build public.orders",
			"copy public.last#0", "build public.last", "copy public.events#0 public.items#0 and build public.items",
			"link public.items public.orders referencing []",
			"post-data built [public.orders public.items public.last] linked [public.orders public.items]"}},
		{"without schema sync", false, []string{"copy public.orders#0", "copy public.orders#1",
			"copy public.last#0", "copy public.events#0 public.items#0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var env *testsuite.TestWorkflowEnvironment
			var log []string
			env = newEnv(t, map[string]any{
				"ResolveTables": func(context.Context, spec.Spec) ([]spec.TableMap, error) { return tables, nil },
				"PlanLoad":      func(context.Context, api.SchemaInput) ([]api.TablePlan, error) { return plans, nil },
				"CopyChunk": func(_ context.Context, in api.CopyChunkInput) (api.Result, error) {
					log = append(log, "copy "+in.Chunk.ID)
					return api.Result{Rows: 1}, nil
				},
				"CopyChunks": func(_ context.Context, in api.CopyChunksInput) ([]api.Result, error) {
					var ids []string
					for _, c := range in.Chunks {
						ids = append(ids, c.ID)
					}
					log = append(log, "copy "+strings.Join(ids, " "))
					return make([]api.Result, len(in.Chunks)), nil
				},
				"CopyChunksAndBuild": func(_ context.Context, in api.CopyAndBuildInput) (api.CopiedAndBuilt, error) {
					var ids, built []string
					for _, c := range in.Chunks {
						ids = append(ids, c.ID)
					}
					for _, k := range in.Build {
						built = append(built, in.Chunks[k].Table.Source.String())
					}
					log = append(log, "copy "+strings.Join(ids, " ")+" and build "+strings.Join(built, " "))
					return api.CopiedAndBuilt{Results: make([]api.Result, len(in.Chunks))}, nil
				},
				"BuildTables": func(_ context.Context, in api.BuildInput) (api.SchemaReport, error) {
					names := func(tables []spec.TableMap) []string {
						var out []string
						for _, tm := range tables {
							out = append(out, tm.Source.String())
						}
						return out
					}
					if len(in.ForeignKeysOf) > 0 {
						require.Empty(t, in.Tables)
						log = append(log, fmt.Sprintf("link %s referencing %v", strings.Join(names(in.ForeignKeysOf), " "), names(in.Referenced)))
						return api.SchemaReport{}, nil
					}
					log = append(log, "build "+strings.Join(names(in.Tables), " "))
					return api.SchemaReport{Created: []string{"index on " + names(in.Tables)[0]}}, nil
				},
				"SchemaPostData": func(_ context.Context, in api.SchemaInput) (api.SchemaReport, error) {
					log = append(log, fmt.Sprintf("post-data built %v linked %v", in.Built, in.Linked))
					return api.SchemaReport{}, nil
				},
				"Apply": applyUntilCancelled(func(int) {
					env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
				}),
			})
			s := testSpec()
			s.FullLoad.Parallelism = 1
			s.Sync.Schema = &tc.schema
			env.ExecuteWorkflow(SyncTask, s, nil)
			require.NoError(t, env.GetWorkflowError())
			require.Equal(t, tc.want, log)
			if tc.schema {
				require.Contains(t, queryStatus(t, env).Schema.Created, "index on public.orders", "a build's report is in the status")
			}
		})
	}
}
