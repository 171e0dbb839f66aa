package workflows

import (
	"errors"
	"fmt"
	"time"

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
		runCtx, stop := workflow.WithCancel(ctx)
		workflow.Go(runCtx, func(c workflow.Context) {
			if workflow.Await(c, func() bool {
				return w.pauseRequested || w.releaseRequested || w.merging || (w.historyFull(c) && !w.modifying)
			}) == nil {
				stop()
			}
		})
		in := api.ApplyInput{Spec: w.spec, Tables: w.tables, MaxRun: w.tuning.ApplyMaxRun, ReportEvery: w.tuning.ApplyReportEvery,
			SkipBefore: w.skipBefore, StallAfter: w.tuning.ApplyStallAfter}
		var res api.ApplyProgress
		w.runCounts, w.runNotReplicated = api.Counts{}, 0
		w.applyRunning = true
		err := w.call(runCtx, opts, api.ActivityApply, &res, in)
		w.applyRunning = false
		interrupted := runCtx.Err() != nil
		stop()
		if err == nil {
			w.onProgress(res)
			continue
		}
		var canceled *temporal.CanceledError
		if interrupted || errors.As(err, &canceled) {
			// Stopped for pause, release or continue-as-new: however the run ended, the loop head
			// decides what comes next. A real failure shows again on the next run, in call().
			continue
		}
		return err
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
	carry := Carry{State: State{Status: &st, Tables: w.tables, SkipBefore: w.skipBefore, Paused: w.pauseRequested}, Tuning: w.tuning}
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
