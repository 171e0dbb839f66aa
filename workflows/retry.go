package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// call runs an activity with the task's retry windows: connection errors are retried for
// retry.connection_minutes and other errors for retry.other_minutes, from the first failure of
// the streak, with backoff; then the task shows failed and waits for resume or release.
func (w *task) call(ctx workflow.Context, opts workflow.ActivityOptions, fn any, result any, args ...any) error {
	opts.RetryPolicy = &temporal.RetryPolicy{MaximumAttempts: 1}
	var streakStart time.Time
	attempts := 0
	lastFailure := "" // the error of the streak's last failed run
	for {
		if ctx.Err() != nil {
			return temporal.NewCanceledError()
		}
		if w.releaseRequested {
			return errReleased
		}
		seq := w.progressSeq
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), fn, afterFailures(args, attempts)...).Get(ctx, result)
		if w.progressSeq != seq && !sameFailure(ctx, err, attempts, lastFailure) {
			attempts = 0 // the activity made progress before it ended: a new streak starts
		}
		if err == nil {
			if attempts > 0 {
				w.metrics.retry(w.status.Retry.Class, 0)
				w.status.Phase = w.phase
			}
			w.recovered()
			return nil
		}
		var canceled *temporal.CanceledError
		if errors.As(err, &canceled) || ctx.Err() != nil {
			return err
		}
		if snapshotLost(err) || errors.Is(err, workflow.ErrSessionFailed) {
			return err // the caller starts over in a new snapshot, or a new session
		}
		class := classOf(err)
		now := workflow.Now(ctx)
		if attempts == 0 {
			streakStart = now
		}
		attempts++
		minutes := w.spec.Retry.OtherMinutes
		if class == api.Connection {
			minutes = w.spec.Retry.ConnectionMinutes
		}
		window := time.Duration(minutes) * w.tuning.RetryUnit
		w.status.LastError = errorText(err)
		w.streakError = w.status.LastError
		lastFailure = w.status.LastError
		w.status.Retry = api.RetryState{Class: string(class), Since: streakStart.UTC().Format(time.RFC3339), Attempts: attempts,
			WindowMinutes: minutes}
		w.metrics.retry(string(class), attempts)
		workflow.GetLogger(ctx).Warn("activity failed", "class", class, "attempts", attempts, "error", w.status.LastError)
		if class == api.Fatal || now.Sub(streakStart) >= window {
			w.status.Phase = api.PhaseFailed
			w.alert(api.AlertFailed, w.status.LastError)
			if err := w.awaitResume(ctx); err != nil {
				return err
			}
			if w.releaseRequested {
				return errReleased
			}
			attempts = 0
			w.status.Retry = api.RetryState{}
			w.status.Phase = w.phase
			continue
		}
		w.status.Phase = api.PhaseRetrying
		if _, err := workflow.AwaitWithTimeout(ctx, retryBackoff(attempts), func() bool { return w.releaseRequested }); err != nil {
			return err
		}
	}
}

// retryBackoff is the wait before the next run after the streak's attempts-th failure: one
// second, doubling to a minute. Every retry loop of the workflows waits so.
func retryBackoff(attempts int) time.Duration {
	return min(time.Duration(1<<min(max(attempts, 1)-1, 6))*time.Second, time.Minute)
}

// sameFailure says whether a run that made progress failed again with its streak's own error: a
// change that can never apply (the same statement failing the same way) keeps the streak, and so
// its window, whatever the run applied before it.
func sameFailure(ctx workflow.Context, err error, attempts int, lastFailure string) bool {
	if err == nil || attempts == 0 || errorText(err) != lastFailure {
		return false
	}
	return workflow.GetVersion(ctx, "same-failure-keeps-streak", workflow.DefaultVersion, 1) >= 1
}

// recovered ends the failure streak in the status: its retry state goes, and its error moves
// from LastError to LastRecoveredError (a notice put in LastError since stays).
func (w *task) recovered() {
	w.status.Retry = api.RetryState{}
	if w.streakError == "" {
		return
	}
	if w.status.LastError == w.streakError {
		w.status.LastError = ""
	}
	w.status.LastRecoveredError = w.streakError
	w.streakError = ""
}

// afterFailures tells an input that wants to know it (api.Retried: an apply run) how many runs of
// its streak failed before it (each run is a single attempt: the retries are call's loop).
func afterFailures(args []any, failed int) []any {
	if failed == 0 || len(args) != 1 {
		return args
	}
	if r, ok := args[0].(api.Retried); ok {
		return []any{r.WithFailedAttempts(failed)}
	}
	return args
}

// classOf reads the retry class an activity put in its ApplicationError. A timeout (a worker that
// died or lost its network) counts as a connection error.
func classOf(err error) api.Class {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch api.Class(appErr.Type()) {
		case api.Connection, api.Fatal, api.Other:
			return api.Class(appErr.Type())
		}
		return api.Other
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return api.Connection
	}
	return api.Other
}

// snapshotLost reports an activity error saying the task's exported snapshot can no longer be
// imported (its holder ended).
func snapshotLost(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == api.ErrSnapshotLost
}

// errorText is the innermost message, without the SDK's wrapping (its "(type: ..., retryable:
// ...)" suffix, which says nothing of the task's own retries: the retry state does).
func errorText(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		if msg := appErr.Message(); msg != "" {
			return msg
		}
		return appErr.Error()
	}
	return err.Error()
}
