package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// Verify compares every table of a task: in checksum mode chunk by chunk, differences narrowed
// down to rows. A running task must be in incremental (its changes keep streaming while the
// comparison waits for them); a closed task is compared as the databases are.
func Verify(ctx workflow.Context, req api.VerifyRequest) (api.VerifyReport, error) {
	rep := api.VerifyReport{Task: req.Task}
	if req.Task == "" {
		return rep, temporal.NewNonRetryableApplicationError("task: the id of the task to verify is required", "bad_request", nil)
	}
	short := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	var info api.TaskInfo
	if err := retryConnection(ctx, func() error {
		return workflow.ExecuteActivity(short, api.ActivityDescribeTask, req.Task).Get(ctx, &info)
	}); err != nil {
		return rep, err
	}
	if info.Running && info.Phase != api.PhaseIncremental {
		return rep, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"task %s is %s: verify compares a running task while it is incremental (or once it has ended)", req.Task, info.Phase),
			"bad_phase", nil)
	}
	s := info.Spec
	s.ApplyDefaults()
	if s.Verify.Mode == spec.VerifyNone || req.Repair {
		s.Verify.Mode = spec.VerifyChecksum // a repair needs the rows that differ
	}
	if req.Repair && s.ConflictMode == spec.ConflictIgnore {
		return rep, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"repair: task %s has conflict_mode ignore, which keeps destination rows that differ from the source: verify without --repair", req.Task),
			"bad_request", nil)
	}
	// A running task's own list (it follows schema changes on the source), else the spec's.
	tables := info.Tables
	if len(tables) == 0 {
		if err := retryConnection(ctx, func() error { return workflow.ExecuteActivity(short, api.ActivityResolveTables, s).Get(ctx, &tables) }); err != nil {
			return rep, err
		}
	}
	rep.Streaming = info.Running && s.IncrementalSync()
	long := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	in := api.VerifyTaskInput{Spec: s, Tables: tables, Streaming: rep.Streaming, Rotate: req.Scheduled, Round: req.Round}
	if req.Repair {
		in.RepairID = workflow.GetInfo(ctx).WorkflowExecution.RunID
	}
	if err := retryConnection(ctx, func() error { return workflow.ExecuteActivity(long, api.ActivityVerifyTask, in).Get(ctx, &rep.Tables) }); err != nil {
		return rep, err
	}
	rep.Equal = true
	for _, t := range rep.Tables {
		rep.Equal = rep.Equal && t.Equal
	}
	if err := repairFound(ctx, req, info, &rep, api.RepairInput{Spec: s, Tables: tables, RepairID: in.RepairID}); err != nil {
		return rep, err
	}
	if info.Running {
		// The task may have ended since; its status then simply misses this report.
		err := workflow.SignalExternalWorkflow(ctx, req.Task, "", api.SignalVerifyReport, rep.Tables).Get(ctx, nil)
		if err != nil {
			workflow.GetLogger(ctx).Warn("verify report not delivered to the task", "task", req.Task, "error", err)
		}
	}
	return rep, nil
}

// retryConnection runs f again, with backoff, while it fails with a connection error (a server
// restarting, a network blip), for up to 15 minutes: a verification (also the one a task starts
// after a lost snapshot) outlives such faults. Other errors return at once.
func retryConnection(ctx workflow.Context, f func() error) error {
	start := workflow.Now(ctx)
	for attempts := 1; ; attempts++ {
		err := f()
		if err == nil || classOf(err) != api.Connection || workflow.Now(ctx).Sub(start) > 15*time.Minute ||
			workflow.GetVersion(ctx, "verify-retries-connection", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return err
		}
		backoff := retryBackoff(attempts)
		workflow.GetLogger(ctx).Warn("verification: connection error, trying again", "error", err, "in", backoff)
		if err := workflow.Sleep(ctx, backoff); err != nil {
			return err
		}
	}
}

// repairWait bounds how long a verification waits for its task to carry out a repair (a paused
// task carries it out once resumed).
const repairWait = 6 * time.Hour

// repairLook is how often a verification waiting for a repair looks whether its task still runs.
const repairLook = time.Minute

// repairFound repairs what the comparison recorded for repair (api.TableRepair.Pending): a
// streaming task does it in its change stream, at a position of its own (SignalRepair); for a
// task that does not stream the Repair activity reads the source as it is. The outcome goes into
// the report's tables.
func repairFound(ctx workflow.Context, req api.VerifyRequest, info api.TaskInfo, rep *api.VerifyReport, in api.RepairInput) error {
	pending := false
	for _, t := range rep.Tables {
		pending = pending || (t.Repair != nil && t.Repair.Pending)
	}
	if !pending {
		rep.Repaired = req.Repair && !rep.Equal && unrepaired(rep.Tables) == 0
		return nil
	}
	var out api.RepairOutcome
	if rep.Streaming {
		self := workflow.GetInfo(ctx).WorkflowExecution.ID
		done := workflow.GetSignalChannel(ctx, api.SignalRepairDone)
		if err := workflow.SignalExternalWorkflow(ctx, req.Task, "", api.SignalRepair, api.RepairRequest{ID: in.RepairID, From: self}).Get(ctx, nil); err != nil {
			return fmt.Errorf("repair: ask task %s: %w", req.Task, err)
		}
		tctx, cancelTimers := workflow.WithCancel(ctx)
		defer cancelTimers()
		timer := workflow.NewTimer(tctx, repairWait)
		short := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
		for out.ID != in.RepairID {
			timedOut, look := false, false
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(done, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &out) })
			sel.AddFuture(timer, func(workflow.Future) { timedOut = true })
			sel.AddFuture(workflow.NewTimer(tctx, repairLook), func(workflow.Future) { look = true })
			sel.Select(ctx)
			if timedOut {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("repair: task %s did not carry out the repair within %s (is it paused?); its differences stay recorded", req.Task, repairWait), "repair_timeout", nil)
			}
			if !look {
				continue
			}
			// A task that ended (terminated, failed, released) never answers.
			var running bool
			if err := workflow.ExecuteActivity(short, api.ActivityTaskRunning, req.Task).Get(ctx, &running); err != nil {
				return err
			}
			if !running {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf("repair: task %s ended before it carried out the repair; run the verification again once it runs", req.Task), "repair_task_ended", nil)
			}
		}
	} else {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 24 * time.Hour, HeartbeatTimeout: time.Minute, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3},
		})
		if err := retryConnection(ctx, func() error { return workflow.ExecuteActivity(actx, api.ActivityRepair, in).Get(ctx, &out) }); err != nil {
			return err
		}
	}
	if out.Error != "" {
		return temporal.NewNonRetryableApplicationError("repair: "+out.Error, "repair_failed", nil)
	}
	rep.RepairPosition = out.Position
	for i := range rep.Tables {
		for _, tr := range out.Tables {
			if rep.Tables[i].Repair != nil && tr.Table == rep.Tables[i].Repair.Table {
				tr := tr
				rep.Tables[i].Repair = &tr
			}
		}
	}
	rep.Repaired = unrepaired(rep.Tables) == 0
	return nil
}

// unrepaired counts the tables with differences that no repair fixed.
func unrepaired(tables []api.TableResult) int {
	n := 0
	for _, t := range tables {
		if !t.Equal && (t.Repair == nil || t.Repair.Pending || t.Repair.Refused != "") {
			n++
		}
	}
	return n
}
