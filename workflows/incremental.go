package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// incremental runs the apply activity until release, pausing and resuming on signals and
// continuing as new when the history grows.
func (w *task) incremental(ctx workflow.Context) error {
	w.setPhase(api.PhaseIncremental)
	for i := range w.status.Tables {
		w.status.Tables[i].State = api.TableDone
	}
	if w.verifyWhenStreaming {
		w.verifyWhenStreaming = false
		w.startStreamingVerify(ctx)
	}
	if w.spec.Verify.EveryMinutes > 0 {
		workflow.Go(ctx, w.verifyOnSchedule)
	}
	opts := w.applyOptions()
	for {
		if w.releaseRequested {
			return errReleased
		}
		if w.pauseRequested {
			err := w.paused(ctx)
			if errors.Is(err, errContinuePaused) {
				if err := w.continueAsNew(ctx, func() bool { return !w.releaseRequested }); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			continue
		}
		if w.merging {
			if err := workflow.Await(ctx, func() bool { return !w.merging || w.releaseRequested }); err != nil {
				return err
			}
			continue
		}
		if w.historyFull(ctx) && !w.modifying {
			if err := w.continueAsNew(ctx, func() bool { return !w.releaseRequested && !w.pauseRequested }); err != nil {
				return err
			}
			continue
		}
		if len(w.repairs) > 0 {
			if err := w.repair(ctx, opts); err != nil {
				return err
			}
			continue
		}
		in := api.ApplyInput{Spec: w.spec, Tables: w.tables, MaxRun: w.tuning.ApplyMaxRun, ReportEvery: w.tuning.ApplyReportEvery,
			SkipBefore: w.skipBefore, StallAfter: w.tuning.ApplyStallAfter}
		_, err := w.applyRun(ctx, opts, in, func(c workflow.Context) bool {
			return w.historyFull(c) && !w.modifying || len(w.repairs) > 0
		})
		if err != nil {
			return err
		}
	}
}

// applyRun runs the apply activity once, until it ends or a pause, release or merge asks it to
// stop, or also stop() says so. A run stopped that way returns no error (the loop head decides
// what comes next); a real failure shows again on the next run, in call().
func (w *task) applyRun(ctx workflow.Context, opts workflow.ActivityOptions, in api.ApplyInput, also func(workflow.Context) bool) (*api.ApplyProgress, error) {
	runCtx, stop := workflow.WithCancel(ctx)
	workflow.Go(runCtx, func(c workflow.Context) {
		if workflow.Await(c, func() bool {
			return w.pauseRequested || w.releaseRequested || w.merging || also(c)
		}) == nil {
			stop()
		}
	})
	var res api.ApplyProgress
	w.runCounts, w.runNotReplicated = api.Counts{}, 0
	w.applyRunning = true
	err := w.call(runCtx, opts, api.ActivityApply, &res, in)
	w.applyRunning = false
	interrupted := runCtx.Err() != nil
	stop()
	if err == nil {
		w.onProgress(res)
		return &res, nil
	}
	var canceled *temporal.CanceledError
	if interrupted || errors.As(err, &canceled) {
		return nil, nil
	}
	return nil, err
}

// repair carries out the first repair asked for: an apply run that stops at a snapshot's
// position and repairs there (api.ApplyInput.Repair). A run that ends before it reached the
// position leaves the repair to the next. The verification that asked gets the outcome, also a
// failure (which fails the task as any apply failure does).
func (w *task) repair(ctx workflow.Context, opts workflow.ActivityOptions) error {
	req := w.repairs[0]
	in := api.ApplyInput{Spec: w.spec, Tables: w.tables, ReportEvery: w.tuning.ApplyReportEvery,
		SkipBefore: w.skipBefore, StallAfter: w.tuning.ApplyStallAfter, Repair: req.ID}
	res, err := w.applyRun(ctx, opts, in, func(workflow.Context) bool { return false })
	var out api.RepairOutcome
	switch {
	case err != nil:
		out = api.RepairOutcome{ID: req.ID, Error: errorText(err)}
	case res == nil || res.Repair == nil:
		return nil
	default:
		out = *res.Repair
		w.status.LastRepair = &out
	}
	w.repairs = w.repairs[1:]
	if serr := workflow.SignalExternalWorkflow(ctx, req.From, "", api.SignalRepairDone, out).Get(ctx, nil); serr != nil {
		workflow.GetLogger(ctx).Warn("repair outcome not delivered", "to", req.From, "error", serr)
	}
	return err
}

// verifyOnSchedule starts the task's verification every verify.every_minutes while it streams
// (a child that outlives the run, as skein verify's), with verify.repair, the sampled chunks
// taken by turn. A verification still running (the user's, or the last one) skips the turn.
func (w *task) verifyOnSchedule(ctx workflow.Context) {
	every := time.Duration(w.spec.Verify.EveryMinutes) * time.Minute
	if w.tuning.VerifyEvery > 0 {
		every = w.tuning.VerifyEvery
	}
	if w.verifyDue.IsZero() {
		w.verifyDue = workflow.Now(ctx).Add(every)
	}
	for {
		if wait := w.verifyDue.Sub(workflow.Now(ctx)); wait > 0 {
			if err := workflow.Sleep(ctx, wait); err != nil {
				return
			}
		}
		w.verifyDue = workflow.Now(ctx).Add(every)
		if w.status.Phase != api.PhaseIncremental {
			continue
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:               api.VerifyWorkflowID(w.spec.Name),
			ParentClosePolicy:        enums.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowExecutionTimeout: 25 * time.Hour,
			WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		})
		f := workflow.ExecuteChildWorkflow(cctx, api.VerifyWorkflowName,
			api.VerifyRequest{Task: w.spec.Name, Repair: w.spec.Verify.Repair, Round: w.verifyRound, Scheduled: true})
		if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Info("scheduled verification skipped: one is running", "error", err)
			continue
		}
		w.verifyRound++
		// Its report reaches the task as a verify-report signal; a failure is in its own history.
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("scheduled verification failed", "error", err)
			w.alert(api.AlertVerify, "scheduled verification failed: "+errorText(err))
		}
	}
}

// applyOptions are the options of an apply run.
func (w *task) applyOptions() workflow.ActivityOptions {
	// A run ends after ApplyMaxRun (30 minutes by default) at a transaction boundary, so it may
	// go on while a long source transaction arrives: the heartbeat, not the run's length, tells a
	// lost worker.
	opts := workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour, HeartbeatTimeout: 30 * time.Second, WaitForCancellation: true,
	}
	if w.tuning.ApplyMaxRun > 0 {
		opts.StartToCloseTimeout = w.tuning.ApplyMaxRun + time.Hour
	}
	return opts
}

func (w *task) historyFull(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetCurrentHistoryLength() >= w.tuning.HistoryLimit || info.GetContinueAsNewSuggested()
}

// continueAsNew hands the task's state to a new run once every signal delivered so far is handled
// (syncSignals) and if still() holds then; else it returns nil and the caller's loop decides what
// the signals asked for.
func (w *task) continueAsNew(ctx workflow.Context, still func() bool) error {
	w.syncSignals(ctx)
	if !still() {
		return nil
	}
	// Updates in flight finish in this run.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	w.flushAlerts(ctx)
	// Waiting for handlers and alerts may have let more signals in.
	w.syncSignals(ctx)
	if !still() {
		return nil
	}
	st := w.status
	carry := Carry{State: State{Status: &st, Tables: w.tables, SkipBefore: w.skipBefore, Paused: w.pauseRequested,
		Repairs: w.repairs, VerifyDue: w.verifyDue, VerifyRound: w.verifyRound}, Tuning: w.tuning}
	return workflow.NewContinueAsNewError(ctx, SyncTask, w.spec, &carry)
}

// validateSequences accepts the update only once the tables are known and while the task runs,
// so a rejected request leaves no trace in the history.
func (w *task) validateSequences(offset int64) error {
	if offset < 0 {
		return fmt.Errorf("offset %d is negative", offset)
	}
	switch w.status.Phase {
	case api.PhasePostSchema, api.PhaseIncremental, api.PhasePaused, api.PhaseRetrying, api.PhaseFinished:
		if len(w.tables) > 0 {
			return nil
		}
	}
	return fmt.Errorf("the task is %s: sequences can be set once the full load is done and while the task runs", w.status.Phase)
}

// syncSequences runs the SyncSequences activity for the update.
func (w *task) syncSequences(ctx workflow.Context, offset int64) ([]string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var set []string
	err := workflow.ExecuteActivity(ctx, api.ActivitySyncSequences,
		api.SequencesInput{Spec: w.spec, Tables: w.tables, Offset: offset}).Get(ctx, &set)
	return set, err
}

// paused waits for resume or release. Meanwhile it measures the growing lag from the slot every
// few report intervals (status and latency alerts) and hands over to a new run when the history
// is full.
func (w *task) paused(ctx workflow.Context) error {
	w.status.Phase = api.PhasePaused
	if workflow.GetVersion(ctx, "paused-lag", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		if err := w.awaitResume(ctx); err != nil {
			return err
		}
		w.status.Phase = w.phase
		return nil
	}
	seen := w.resumes
	pausedAt, lagAtPause := workflow.Now(ctx), w.status.LagSeconds
	every := 4 * w.tuning.ApplyReportEvery
	if every <= 0 {
		every = 2 * time.Minute // three events in the history each time
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	for {
		resumed, err := workflow.AwaitWithTimeout(ctx, every, func() bool { return w.resumes > seen || w.releaseRequested })
		if err != nil {
			return err
		}
		if resumed {
			break
		}
		var st api.SlotState
		if err := workflow.ExecuteActivity(actx, api.ActivitySlotState, w.spec).Get(ctx, &st); err == nil && st.Exists {
			w.status.LagBytes, w.status.LagSeconds = 0, 0
			if st.CurrentWAL > st.ConfirmedFlush {
				w.status.LagBytes = int64(st.CurrentWAL - st.ConfirmedFlush)
				w.status.LagSeconds = lagAtPause + workflow.Now(ctx).Sub(pausedAt).Seconds()
			}
			w.checkLatency()
		}
		if w.historyFull(ctx) && !w.modifying {
			return errContinuePaused
		}
	}
	w.status.Phase = w.phase
	return nil
}
