package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
)

// ApplyProgress is the apply position reported to the workflow (api.ApplyProgress).
type ApplyProgress = api.ApplyProgress

// DefaultReportEvery is the interval of routine progress signals of an apply run: an idle task
// writes about one event a minute to its history for them.
const DefaultReportEvery = time.Minute

// SignalApplyProgress is api.SignalApplyProgress.
const SignalApplyProgress = api.SignalApplyProgress

// ApplyInput is api.ApplyInput.
type ApplyInput = api.ApplyInput

// SkipBefore is api.SkipBefore.
type SkipBefore = api.SkipBefore

// sameReport reports whether two progress reports say the same (the table list aside: its
// version says whether it changed).
func sameReport(a, b ApplyProgress) bool {
	a.Tables, b.Tables = nil, nil
	a.Renamed, b.Renamed = nil, nil
	return a.AppliedLSN == b.AppliedLSN && a.LagBytes == b.LagBytes && a.LagSeconds == b.LagSeconds && a.Counts == b.Counts &&
		a.FlushedLSN == b.FlushedLSN && a.LastSchemaChange == b.LastSchemaChange && a.TablesVersion == b.TablesVersion &&
		a.NotReplicated == b.NotReplicated
}

// exactChanges is how many changes an attempt after a failed one applies statement by statement.
const exactChanges = 10000

// exactAfterFailure is StreamOptions.ExactChanges for a run after failed ones (failed in the
// workflow's count, or attempts of the activity's own retry policy).
func exactAfterFailure(failed int, attempt int32) int {
	if failed > 0 || attempt > 1 {
		return exactChanges
	}
	return 0
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
		in.ReportEvery = DefaultReportEvery
	}
	release, err := a.acquire(ctx, a.slots().applyRuns, "apply run")
	if err != nil {
		return ApplyProgress{}, err
	}
	defer release()
	repl, err := a.Open.ConnectReplication(ctx, in.Spec.Source)
	if err != nil {
		return ApplyProgress{}, classify(ctx, err)
	}
	defer repl.Close(context.WithoutCancel(ctx))
	watched := a.Open
	watched.Traffic = &dbconn.Traffic{}
	dst, err := watched.ConnectDestination(ctx, in.Spec.Destination)
	if err != nil {
		return ApplyProgress{}, classify(ctx, err)
	}
	lagConn, err := a.Open.Connect(ctx, in.Spec.Source)
	if err != nil {
		closeAll(ctx, dst)
		return ApplyProgress{}, classify(ctx, err)
	}
	defer closeAll(ctx, dst, lagConn)

	skip, stopAt, err := streamBounds(ctx, lagConn, in)
	if err == nil {
		// Tasks started before publications named their owner claim theirs here, so that a new
		// task whose name differs only in '-' and '_' cannot take it for its own.
		err = source.ClaimPublication(ctx, lagConn, in.Spec.SlotName(), source.Owner(in.Spec.Name))
	}
	if err != nil {
		return ApplyProgress{}, classify(ctx, err)
	}
	schemaChanges, schemaChangeTable, err := schemaChangeCapture(ctx, lagConn, dst, in)
	if err != nil {
		return ApplyProgress{}, classify(ctx, err)
	}
	var barrier *repairBarrier
	var stopBefore pglogrepl.LSN
	var barrierAt, streamAt time.Time
	if in.Repair != "" {
		barrierAt = time.Now()
		if barrier, err = a.openRepairBarrier(ctx, in.Spec); err != nil {
			return ApplyProgress{}, classify(ctx, err)
		}
		defer barrier.close(ctx)
		stopBefore = barrier.at
		streamAt = time.Now()
		log.Info("repair: the stream applies the changes before the repair's position", zap.Stringer("position", stopBefore))
	}
	// The run ends after MaxRun at a transaction boundary (StreamOptions.RunFor), never inside one.
	runCtx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	go a.watchDestination(runCtx, cancelCause, in.Spec.Destination, watched.Traffic, dst.PgConn().PID(), in.StallAfter, log)
	var src *pgx.Conn // for relations the stream names that the task does not know, opened once needed
	defer func() {
		if src != nil {
			closeAll(ctx, src)
		}
	}()
	// The stream only records its position; a separate reporter heartbeats (so cancellation is
	// noticed even while a destination statement waits on a lock), measures lag and signals the
	// workflow, keeping Temporal round trips off the apply path.
	var mu sync.Mutex
	var latest cdc.Progress
	var last ApplyProgress
	reporterDone := make(chan struct{})
	go func() {
		defer close(reporterDone)
		a.reportApply(runCtx, ctx, lagConn, in.ReportEvery, in.Spec.Alerts.LatencySeconds, !in.Helper, func() cdc.Progress {
			mu.Lock()
			defer mu.Unlock()
			return latest
		}, func(ap ApplyProgress) {
			mu.Lock()
			last = ap
			mu.Unlock()
		})
	}()
	err = cdc.Stream(runCtx, repl, dst, cdc.StreamOptions{
		Task:           in.Spec.Name,
		Slot:           in.Spec.SlotName(),
		Publication:    in.Spec.SlotName(),
		Tables:         in.Tables,
		StatusInterval: min(in.ReportEvery, 5*time.Second),
		OnProgress: func(p cdc.Progress) {
			mu.Lock()
			latest = p
			mu.Unlock()
		},
		Log:    log,
		Upsert: in.Spec.ConflictMode == spec.ConflictIgnore,
		Throttle: throttle.New(float64(in.Spec.Throttle.Incremental.RowsPerSecond),
			float64(in.Spec.Throttle.Incremental.MBPerSecond)),
		SkipBefore: skip,
		Lanes:      in.Spec.ApplyLanes(),
		OpenLane: func(ctx context.Context) (*pgx.Conn, error) {
			return a.Open.ConnectDestination(ctx, in.Spec.Destination)
		},
		StopAt:            stopAt,
		StopBefore:        stopBefore,
		RunFor:            in.MaxRun,
		SchemaChanges:     schemaChanges,
		SchemaChangeTable: schemaChangeTable,
		Objects:           in.Spec.Objects,
		Unknown: func(ctx context.Context, relID uint32, name spec.QName) error {
			if src == nil {
				c, err := a.Open.Connect(ctx, in.Spec.Source)
				if err != nil {
					return err
				}
				src = c
			}
			return source.CheckUnknownRelation(ctx, src, in.Spec.SlotName(), relID, name)
		},
		// After a failed attempt the first changes go statement by statement, so that a change
		// the destination rejects is named exactly (a keyed batch names its first and last key).
		ExactChanges: exactAfterFailure(in.FailedAttempts, activity.GetInfo(ctx).Attempt),
	})
	if cause := context.Cause(runCtx); errors.Is(cause, errDestinationStalled) {
		err = cause // the watchdog ended the run: the connection is lost, not canceled
	}
	cancel()
	<-reporterDone
	mu.Lock()
	out := runProgress(ctx, last, latest)
	mu.Unlock()
	if barrier != nil && err == nil && ctx.Err() == nil && latest.ReachedStop {
		writeAt := time.Now()
		out.Repair, err = a.repairAt(ctx, barrier, dst, in)
		if err == nil {
			out.Repair.BarrierSeconds = streamAt.Sub(barrierAt).Seconds()
			out.Repair.CatchUpSeconds = writeAt.Sub(streamAt).Seconds()
			out.Repair.WriteSeconds = time.Since(writeAt).Seconds()
			log.Info("repaired at a stream position", zap.String("position", out.Repair.Position),
				zap.Float64("barrier_seconds", out.Repair.BarrierSeconds), zap.Float64("catch_up_seconds", out.Repair.CatchUpSeconds),
				zap.Float64("write_seconds", out.Repair.WriteSeconds))
		}
	}
	switch {
	case ctx.Err() != nil:
		log.Info("apply stopped", zap.String("applied_lsn", out.AppliedLSN))
		return out, ctx.Err()
	case errors.Is(err, context.DeadlineExceeded) && runCtx.Err() != nil:
		log.Info("apply run ended, the workflow starts the next", zap.String("applied_lsn", out.AppliedLSN))
		return out, nil
	case err != nil:
		err = classify(ctx, err)
		log.Error("apply failed", zap.Error(err))
		return out, err
	}
	return out, nil
}

// runName names an apply run in its progress reports: its activity id and attempt.
func runName(ctx context.Context) string {
	info := activity.GetInfo(ctx)
	return fmt.Sprintf("%s#%d", info.ActivityID, info.Attempt)
}

// reportApply heartbeats every second with the stream's latest position until runCtx ends (the
// live figures: skein status and the UI's pending activity show them), and signals the workflow
// when reportDue says so. actCtx is the activity's context (heartbeats need it); alertSeconds is
// alerts.latency_seconds.
func (a *Activities) reportApply(runCtx, actCtx context.Context, lagConn *pgx.Conn, reportEvery time.Duration, alertSeconds int, signal bool,
	latest func() cdc.Progress, record func(ApplyProgress)) {
	info := activity.GetInfo(actCtx)
	log := a.logger(actCtx)
	tick := time.NewTicker(min(reportEvery, time.Second))
	defer tick.Stop()
	var last ApplyProgress
	var lastSent, lastBeat time.Time
	beats := true
	// A quiet selection still moves the slot: a heartbeat into the source's WAL this often.
	beatEvery := min(reportEvery, 5*time.Second)

	for {
		select {
		case <-runCtx.Done():
			return
		case <-tick.C:
		}
		p := latest()
		ap := ApplyProgress{Run: runName(actCtx), AppliedLSN: p.AppliedLSN.String(), Counts: p.Counts, LastSchemaChange: p.LastSchemaChange, TablesVersion: p.TablesVersion,
			NotReplicated: p.NotReplicated, LastNotReplicated: p.LastNotReplicated}
		if p.TablesVersion != last.TablesVersion {
			ap.Tables, ap.Renamed = p.Tables, p.Renamed
		}
		if cur, err := source.CurrentWAL(runCtx, lagConn); err == nil && cur > p.FlushedLSN {
			ap.LagBytes = int64(cur - p.FlushedLSN)
			if !p.LastCommitTime.IsZero() {
				ap.LagSeconds = time.Since(p.LastCommitTime).Seconds()
			}
		}
		activity.RecordHeartbeat(actCtx, ap)
		record(ap)
		// A quiet selection: a heartbeat into the source's WAL moves the slot and the lag.
		if beats && time.Since(p.LastCommitTime) >= beatEvery && time.Since(lastBeat) >= beatEvery {
			lastBeat = time.Now()
			if err := source.EmitHeartbeat(runCtx, lagConn, info.WorkflowExecution.ID); err != nil && runCtx.Err() == nil {
				log.Warn("heartbeats into the source WAL are off; the slot advances only with changes of the selection", zap.Error(err))
				beats = false
			}
		}
		due := reportDue(ap, last, lastSent.IsZero(), time.Since(lastSent), reportEvery, alertSeconds)
		if !due || a.Client == nil || !signal {
			continue
		}
		last, lastSent = ap, time.Now()
		// RunID "" reaches the current run, also after continue-as-new.
		if err := a.Client.SignalWorkflow(runCtx, info.WorkflowExecution.ID, "", SignalApplyProgress, ap); err != nil && runCtx.Err() == nil {
			log.Warn("report apply progress", zap.Error(err))
		}
	}
}

// reportDue decides whether a progress report goes to the workflow now, as a signal: an event in
// the task's history. What a person looks for there goes at once: the run's first report (it
// applies again: a failure streak is over), a schema change applied or skipped, a change not
// replicated, the lag crossing alerts.latency_seconds either way. The rest (position, lag,
// counts) goes at most every routine interval, and nothing when nothing changed.
func reportDue(now, last ApplyProgress, first bool, sinceLast, every time.Duration, alertSeconds int) bool {
	switch {
	case first:
		return true
	case now.TablesVersion != last.TablesVersion, now.Counts.SchemaChanges != last.Counts.SchemaChanges,
		now.Counts.SchemaChangesSkipped != last.Counts.SchemaChangesSkipped, now.NotReplicated != last.NotReplicated,
		now.LastSchemaChange != last.LastSchemaChange:
		return true
	case alertSeconds > 0 && (now.LagSeconds > float64(alertSeconds)) != (last.LagSeconds > float64(alertSeconds)):
		return true
	}
	return sinceLast >= every && !sameReport(now, last)
}

// schemaChangeCapture is where the task's schema changes come in the stream, when the source
// captures them: the message prefix, and before 14 the events table. It records the tables the
// capture does not know yet (cdc.RecordMissing).
func schemaChangeCapture(ctx context.Context, lagConn, dst *pgx.Conn, in ApplyInput) (prefix string, table spec.QName, err error) {
	if in.Helper || !in.Spec.CapturesSchemaChanges() {
		return "", spec.QName{}, nil
	}
	installed, err := ddlcapture.IsInstalled(ctx, lagConn, in.Spec.SlotName())
	if err != nil || !installed {
		return "", spec.QName{}, err
	}
	prefix = ddlcapture.Prefix(in.Spec.SlotName())
	if !ddlcapture.Messages(lagConn) {
		table = ddlcapture.EventsTable(in.Spec.SlotName())
	}
	return prefix, table, cdc.RecordMissing(ctx, lagConn, dst, in.Spec.Name, in.Tables)
}

// runProgress is what an apply run returns: the reporter's last report with the stream's final
// position, counts and table list.
func runProgress(ctx context.Context, last ApplyProgress, latest cdc.Progress) ApplyProgress {
	out := last
	out.Run = runName(ctx)
	if p := latest; p.AppliedLSN != 0 {
		out.AppliedLSN, out.Counts, out.LastSchemaChange = p.AppliedLSN.String(), p.Counts, p.LastSchemaChange
	}
	out.NotReplicated, out.LastNotReplicated = latest.NotReplicated, latest.LastNotReplicated
	if latest.TablesVersion > 0 {
		out.Tables, out.TablesVersion, out.Renamed = latest.Tables, latest.TablesVersion, latest.Renamed
	}
	if latest.FlushedLSN != 0 {
		out.FlushedLSN = latest.FlushedLSN.String()
	}
	return out
}

// streamBounds parses the run's skip list and stop position (CatchUp: the source's position now).
func streamBounds(ctx context.Context, src *pgx.Conn, in ApplyInput) (map[spec.QName]pglogrepl.LSN, pglogrepl.LSN, error) {
	skip := map[spec.QName]pglogrepl.LSN{}
	for _, sb := range in.SkipBefore {
		l, err := pglogrepl.ParseLSN(sb.LSN)
		if err != nil {
			return nil, 0, errclass.Permanent(fmt.Errorf("skip_before %s: %w", sb.Table, err))
		}
		skip[sb.Table] = l
	}
	var stopAt pglogrepl.LSN
	var err error
	switch {
	case in.CatchUp:
		stopAt, err = source.CurrentWAL(ctx, src)
	case in.StopAt != "":
		stopAt, err = pglogrepl.ParseLSN(in.StopAt)
		if err != nil {
			err = errclass.Permanent(fmt.Errorf("stop_at: %w", err))
		}
	}
	return skip, stopAt, err
}
