package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/temporalx"
)

// verifyEnv is a test environment for the Verify workflow of the task wf-test, whose
// comparison finds public.orders different and records its rows for repair.
func verifyEnv(t *testing.T, info api.TaskInfo) *testsuite.TestWorkflowEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(temporalx.NewZapLogger(zap.NewNop()))
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	env.RegisterWorkflowWithOptions(Verify, workflow.RegisterOptions{Name: api.VerifyWorkflowName})
	env.RegisterActivity(&activities.Activities{})
	env.OnActivity("DescribeTask", mock.Anything, mock.Anything).Return(info, nil)
	env.OnActivity("ResolveTables", mock.Anything, mock.Anything).Return([]spec.TableMap{tOrders}, nil)
	env.OnActivity("VerifyTask", mock.Anything, mock.Anything).Return(func(_ context.Context, in api.VerifyTaskInput) ([]api.TableResult, error) {
		require.NotEmpty(t, in.RepairID, "the comparison records what to repair under the run's id")
		require.Equal(t, spec.VerifyChecksum, in.Spec.Verify.Mode, "a repair needs the rows that differ")
		return []api.TableResult{
			{Source: "public.items", Equal: true},
			{Source: "public.orders", Missing: 1, Different: 2,
				Repair: &api.TableRepair{Table: "public.orders", Pending: true}},
		}, nil
	})
	return env
}

// TestVerifyRepairsThroughTheStreamingTask: while the task streams, the verification asks the
// task for the repair (SignalRepair, with its run id) and reports the outcome the task sends back.
func TestVerifyRepairsThroughTheStreamingTask(t *testing.T) {
	s := testSpec()
	env := verifyEnv(t, api.TaskInfo{Spec: s, Running: true, Phase: api.PhaseIncremental, Tables: []spec.TableMap{tItems, tOrders}})
	var asked api.RepairRequest
	env.OnSignalExternalWorkflow(mock.Anything, "wf-test", "", api.SignalRepair, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error {
			asked = arg.(api.RepairRequest)
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow(api.SignalRepairDone, api.RepairOutcome{ID: "someone else's"})
				env.SignalWorkflow(api.SignalRepairDone, api.RepairOutcome{ID: asked.ID, Position: "0/42",
					Tables: []api.TableRepair{{Table: "public.orders", Deleted: 2, Inserted: 3}}})
			}, 3*time.Second)
			return nil
		})
	var reported []api.TableResult
	env.OnSignalExternalWorkflow(mock.Anything, "wf-test", "", api.SignalVerifyReport, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error { reported = arg.([]api.TableResult); return nil })
	env.ExecuteWorkflow(api.VerifyWorkflowName, api.VerifyRequest{Task: "wf-test", Repair: true})
	require.NoError(t, env.GetWorkflowError())
	var rep api.VerifyReport
	require.NoError(t, env.GetWorkflowResult(&rep))
	require.NotEmpty(t, asked.ID)
	require.NotEmpty(t, asked.From, "the verification's own workflow id, for the answer")
	require.False(t, rep.Equal)
	require.True(t, rep.Repaired)
	require.Equal(t, "0/42", rep.RepairPosition)
	require.Equal(t, &api.TableRepair{Table: "public.orders", Deleted: 2, Inserted: 3}, rep.Tables[1].Repair)
	require.Len(t, reported, 2, "the task's status gets the report")
	env.AssertActivityNumberOfCalls(t, "Repair", 0)
}

// TestVerifyRepairStopsWhenTheTaskEnds: a task that ends before it carried out the repair
// never answers; the verification looks, and fails naming it instead of waiting for hours.
func TestVerifyRepairStopsWhenTheTaskEnds(t *testing.T) {
	env := verifyEnv(t, api.TaskInfo{Spec: testSpec(), Running: true, Phase: api.PhaseIncremental})
	env.OnSignalExternalWorkflow(mock.Anything, "wf-test", "", api.SignalRepair, mock.Anything).Return(nil)
	looks := 0
	env.OnActivity("TaskRunning", mock.Anything, "wf-test").Return(func(context.Context, string) (bool, error) {
		looks++
		return looks < 3, nil
	})
	env.ExecuteWorkflow(api.VerifyWorkflowName, api.VerifyRequest{Task: "wf-test", Repair: true})
	requireFailure(t, env, "repair_task_ended", "task wf-test ended before it carried out the repair")
	require.Equal(t, 3, looks)
}

// TestVerifyRepairsAnEndedTaskItself: a task that does not run (finished, or its stream
// stopped) is repaired by the Repair activity, reading the source as it is.
func TestVerifyRepairsAnEndedTaskItself(t *testing.T) {
	env := verifyEnv(t, api.TaskInfo{Spec: testSpec()})
	env.OnActivity("Repair", mock.Anything, mock.Anything).Return(func(_ context.Context, in api.RepairInput) (api.RepairOutcome, error) {
		return api.RepairOutcome{ID: in.RepairID, Tables: []api.TableRepair{{Table: "public.orders", Deleted: 1, Inserted: 1}}}, nil
	})
	env.ExecuteWorkflow(api.VerifyWorkflowName, api.VerifyRequest{Task: "wf-test", Repair: true})
	require.NoError(t, env.GetWorkflowError())
	var rep api.VerifyReport
	require.NoError(t, env.GetWorkflowResult(&rep))
	require.True(t, rep.Repaired)
	require.Equal(t, int64(1), rep.Tables[1].Repair.Inserted)
}

// TestVerifyRefusesRepairWithConflictIgnore: conflict_mode ignore keeps differing rows on
// purpose: the request is refused before anything is compared.
func TestVerifyRefusesRepairWithConflictIgnore(t *testing.T) {
	s := testSpec()
	s.ConflictMode = spec.ConflictIgnore
	env := verifyEnv(t, api.TaskInfo{Spec: s, Running: true, Phase: api.PhaseIncremental})
	env.ExecuteWorkflow(api.VerifyWorkflowName, api.VerifyRequest{Task: "wf-test", Repair: true})
	requireFailure(t, env, "bad_request", "conflict_mode ignore")
	env.AssertActivityNumberOfCalls(t, "VerifyTask", 0)
}

// TestTaskRepairsAtAStreamPosition: a repair request stops the running apply; the next apply
// run carries the repair's id (it stops at its barrier and repairs there), the outcome goes back
// to the verification that asked and into the status, and streaming goes on.
func TestTaskRepairsAtAStreamPosition(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var runs []string
	env = newEnv(t, map[string]any{"Apply": func(ctx context.Context, in api.ApplyInput) (api.ApplyProgress, error) {
		runs = append(runs, in.Repair)
		switch len(runs) {
		case 1:
			env.RegisterDelayedCallback(func() {
				env.SignalWorkflow(api.SignalRepair, api.RepairRequest{ID: "r1", From: "wf-test-verify"})
			}, time.Second)
		case 2:
			return api.ApplyProgress{AppliedLSN: "0/20", Repair: &api.RepairOutcome{ID: in.Repair, Position: "0/21",
				Tables: []api.TableRepair{{Table: "public.orders", Inserted: 1}}}}, nil
		default:
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, time.Second)
		}
		<-ctx.Done()
		return api.ApplyProgress{AppliedLSN: "0/10"}, ctx.Err()
	}})
	var outcome api.RepairOutcome
	env.OnSignalExternalWorkflow(mock.Anything, "wf-test-verify", "", api.SignalRepairDone, mock.Anything).Return(
		func(_, _, _, _ string, arg any) error { outcome = arg.(api.RepairOutcome); return nil })
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{"", "r1", ""}, runs)
	require.Equal(t, "r1", outcome.ID)
	require.Equal(t, "0/21", outcome.Position)
	st := queryStatus(t, env)
	require.NotNil(t, st.LastRepair)
	require.Equal(t, "0/21", st.LastRepair.Position)
}

// TestScheduledVerification: with verify.every_minutes (shortened by Tuning.VerifyEvery), the
// streaming task starts a Verify child on schedule, with verify.repair and the sampled chunks'
// turn counted up.
func TestScheduledVerification(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var asked []api.VerifyRequest
	var releaseAfterThree func()
	releaseAfterThree = func() {
		if len(asked) >= 3 {
			env.SignalWorkflow(api.SignalRelease, nil)
			return
		}
		env.RegisterDelayedCallback(releaseAfterThree, 100*time.Millisecond)
	}
	env = newEnv(t, map[string]any{"Apply": applyUntilCancelled(func(int) { releaseAfterThree() })})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, req api.VerifyRequest) (api.VerifyReport, error) {
		asked = append(asked, req)
		return api.VerifyReport{Task: req.Task, Equal: true}, nil
	}, workflow.RegisterOptions{Name: api.VerifyWorkflowName})
	s := testSpec()
	s.Verify.EveryMinutes = 10
	s.Verify.Repair = true
	env.ExecuteWorkflow(SyncTask, s, &Carry{Tuning: Tuning{VerifyEvery: 500 * time.Millisecond}})
	require.NoError(t, env.GetWorkflowError())
	require.GreaterOrEqual(t, len(asked), 3)
	for i, req := range asked {
		require.Equal(t, api.VerifyRequest{Task: "wf-test", Repair: true, Round: i, Scheduled: true}, req)
	}
}
