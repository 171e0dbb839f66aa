package activities

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/spec"
)

// SignalApplyProgress is the internal signal by which the apply activity reports its position to
// the task's workflow, for the status query.
const SignalApplyProgress = "skein-apply-progress"

// ApplyInput asks for a run of change apply.
type ApplyInput struct {
	Spec   spec.Spec       `json:"spec"`
	Tables []spec.TableMap `json:"tables"`
	// MaxRun ends the run cleanly after this long (the workflow starts the next one), which keeps
	// each activity bounded; 0 = 30 minutes.
	MaxRun time.Duration `json:"max_run,omitempty"`
	// ReportEvery is the interval of progress signals; 0 = 5s.
	ReportEvery time.Duration `json:"report_every,omitempty"`
}

// ApplyProgress is the apply position reported to the workflow.
type ApplyProgress struct {
	AppliedLSN string     `json:"applied_lsn"`
	LagBytes   int64      `json:"lag_bytes"`
	LagSeconds float64    `json:"lag_seconds"`
	Counts     cdc.Counts `json:"counts"`
}

// Apply streams changes from the slot to the destination until it is cancelled (pause, release)
// or MaxRun passes. It heartbeats its position; a restart resumes from the LSN committed on the
// destination.
func (a *Activities) Apply(ctx context.Context, in ApplyInput) (ApplyProgress, error) {
	log := a.logger(ctx)
	if in.MaxRun == 0 {
		in.MaxRun = 30 * time.Minute
	}
	if in.ReportEvery == 0 {
		in.ReportEvery = 5 * time.Second
	}
	repl, err := a.Open.ConnectReplication(ctx, in.Spec.Source)
	if err != nil {
		return ApplyProgress{}, classify(err)
	}
	defer repl.Close(context.WithoutCancel(ctx))
	dst, err := a.Open.Connect(ctx, in.Spec.Destination)
	if err != nil {
		return ApplyProgress{}, classify(err)
	}
	lagConn, err := a.Open.Connect(ctx, in.Spec.Source)
	if err != nil {
		closeAll(ctx, dst)
		return ApplyProgress{}, classify(err)
	}
	defer closeAll(ctx, dst, lagConn)

	runCtx, cancel := context.WithTimeout(ctx, in.MaxRun)
	defer cancel()
	info := activity.GetInfo(ctx)
	var mu sync.Mutex
	var last ApplyProgress
	var lastSent time.Time
	report := func(p cdc.Progress) {
		ap := ApplyProgress{AppliedLSN: p.AppliedLSN.String(), Counts: p.Counts}
		if cur, err := cdc.CurrentWAL(runCtx, lagConn); err == nil && cur > p.FlushedLSN {
			ap.LagBytes = int64(cur - p.FlushedLSN)
			if !p.LastCommitTime.IsZero() {
				ap.LagSeconds = time.Since(p.LastCommitTime).Seconds()
			}
		}
		activity.RecordHeartbeat(ctx, ap)
		mu.Lock()
		// A new applied position is reported within a second; lag changes every ReportEvery.
		since := time.Since(lastSent)
		due := (ap.AppliedLSN != last.AppliedLSN && since >= time.Second) || (ap != last && since >= in.ReportEvery)
		if due {
			last, lastSent = ap, time.Now()
		}
		mu.Unlock()
		if due && a.Client != nil {
			// RunID "" reaches the current run, also after continue-as-new.
			if err := a.Client.SignalWorkflow(runCtx, info.WorkflowExecution.ID, "", SignalApplyProgress, ap); err != nil {
				log.Warn("report apply progress", zap.Error(err))
			}
		}
	}
	err = cdc.Stream(runCtx, repl, dst, cdc.StreamOptions{
		Task:           in.Spec.Name,
		Slot:           in.Spec.SlotName(),
		Publication:    in.Spec.SlotName(),
		Tables:         in.Tables,
		StatusInterval: min(in.ReportEvery, 5*time.Second),
		OnProgress:     report,
		Log:            log,
	})
	mu.Lock()
	out := last
	mu.Unlock()
	switch {
	case ctx.Err() != nil:
		log.Info("apply stopped", zap.String("applied_lsn", out.AppliedLSN))
		return out, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded) && runCtx.Err() != nil:
		log.Info("apply run ended, the workflow starts the next", zap.String("applied_lsn", out.AppliedLSN))
		return out, nil
	case err != nil:
		log.Error("apply failed", zap.Error(err))
		return out, classify(err)
	}
	return out, nil
}
