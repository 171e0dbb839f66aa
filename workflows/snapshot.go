package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// snapshotHold is a snapshot held by an activity on one worker, in a session.
type snapshotHold struct {
	snap api.SlotSnapshot
	// cancel asks the holder to end (with quick, by EndSnapshot too); nil once asked.
	cancel func(quick bool)
	stop   func() error // waits for it to end; nil once ended
	done   func()       // completes the session
}

// name is the exported snapshot's name ("" without a snapshot).
func (h *snapshotHold) name() string {
	if h == nil {
		return ""
	}
	return h.snap.SnapshotName
}

// letGo asks the holder to end at once (EndSnapshot) without waiting for it (release waits).
func (h *snapshotHold) letGo() {
	if h != nil && h.cancel != nil {
		h.cancel(true)
		h.cancel = nil
	}
}

// release ends the holder once; quiet leaves an error it ended with unlogged.
func (h *snapshotHold) release(ctx workflow.Context, quiet bool) {
	if h == nil || h.stop == nil {
		return
	}
	if h.cancel != nil {
		h.cancel(false)
		h.cancel = nil
	}
	err := h.stop()
	h.stop = nil
	if err != nil && !quiet {
		workflow.GetLogger(ctx).Warn("snapshot holder ended with an error", "error", err)
	}
}

// close releases the holder if it still holds and completes the session.
func (h *snapshotHold) close(ctx workflow.Context) {
	h.release(ctx, true)
	h.done()
}

// openSnapshot creates the snapshot (and the slot, with in.WithSlot) and starts the activity that
// holds it on the same worker, in a session.
func (w *task) openSnapshot(ctx workflow.Context, in api.SnapshotInput) (*snapshotHold, error) {
	for {
		h, err := w.openSnapshotOnce(ctx, in)
		var canceled *temporal.CanceledError
		sessionLost := errors.As(err, &canceled) || errors.Is(err, workflow.ErrSessionFailed)
		if err == nil || !sessionLost || ctx.Err() != nil || w.releaseRequested ||
			workflow.GetVersion(ctx, "reopen-snapshot-session", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return h, err
		}
		// The session's worker went away while the snapshot was opened (its activities were
		// canceled with the session): open it again, in a new session.
		workflow.GetLogger(ctx).Warn("the snapshot's session failed while it was opened: opening it again", "error", err)
	}
}

// openSnapshotOnce is openSnapshot in one session.
func (w *task) openSnapshotOnce(ctx workflow.Context, in api.SnapshotInput) (*snapshotHold, error) {
	sessCtx, err := workflow.CreateSession(ctx, &workflow.SessionOptions{
		CreationTimeout: 5 * time.Minute, ExecutionTimeout: 60 * 24 * time.Hour, HeartbeatTimeout: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("create session for the snapshot holder: %w", err)
	}

	h := &snapshotHold{done: func() { workflow.CompleteSession(sessCtx) }}
	if err := w.call(sessCtx, stepOptions, api.ActivityOpenSnapshot, &h.snap, in); err != nil {
		h.done()
		return nil, err
	}
	holdCtx, cancelHold := workflow.WithCancel(sessCtx)
	holdCtx = workflow.WithActivityOptions(holdCtx, workflow.ActivityOptions{
		StartToCloseTimeout: 60 * 24 * time.Hour, HeartbeatTimeout: 30 * time.Second, WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	hold := workflow.ExecuteActivity(holdCtx, api.ActivityHoldSnapshot, in.Spec.Name)
	var ended workflow.Future
	h.cancel = func(quick bool) {
		if quick {
			endCtx := workflow.WithActivityOptions(sessCtx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute,
				RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}})
			ended = workflow.ExecuteActivity(endCtx, api.ActivityEndSnapshot, in.Spec.Name)
		}
		cancelHold() // the holder ends with its next heartbeat if EndSnapshot cannot reach it
	}
	h.stop = func() error {
		if ended != nil {
			_ = ended.Get(ctx, nil) // best effort: the cancellation ends the holder too
		}
		err := hold.Get(ctx, nil)
		var canceled *temporal.CanceledError
		if errors.As(err, &canceled) {
			return nil
		}
		return err
	}
	return h, nil
}
