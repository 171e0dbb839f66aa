package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// Carry is SyncTask's optional second argument: the state a continued-as-new run carries over, and
// tuning knobs for tests. Users starting a task pass only the spec.
type Carry struct {
	// Status and Tables are set when the run continues an earlier one that reached incremental.
	Status *api.Status     `json:"status,omitempty"`
	Tables []spec.TableMap `json:"tables,omitempty"`
	// HistoryLimit continues-as-new once the history has this many events (default 10,000).
	HistoryLimit int `json:"history_limit,omitempty"`
	// ApplyMaxRun bounds one apply activity run (default 30 minutes).
	ApplyMaxRun time.Duration `json:"apply_max_run,omitempty"`
	// ApplyReportEvery is the interval of apply progress reports (default 5s).
	ApplyReportEvery time.Duration `json:"apply_report_every,omitempty"`
	// ApplyStallAfter is how long a destination statement waits before the apply asks the
	// server whether it still works on it (default a minute; tests shorten it).
	ApplyStallAfter time.Duration `json:"apply_stall_after,omitempty"`
	// SkipBefore carries the added tables' changes the task's stream must still skip.
	SkipBefore []api.SkipBefore `json:"skip_before,omitempty"`
	// Paused carries a pause across continue-as-new.
	Paused bool `json:"paused,omitempty"`
	// RetryUnit is the unit of the spec's retry windows (default a minute; tests shorten it).
	RetryUnit time.Duration `json:"retry_unit,omitempty"`
}

// errReleased ends the work of a phase when the task is being released.
var errReleased = errors.New("task is being released")

type task struct {
	spec   spec.Spec
	carry  Carry
	status api.Status
	phase  string // the phase of the work, shown unless retrying, failed or paused
	tables []spec.TableMap

	pauseRequested   bool
	resumes          int        // resume signals received: every waiter wakes on a new one
	progressSeq      int        // apply progress reports received: a report ends a failure streak
	runCounts        api.Counts // the current apply run's counts as last reported
	runNotReplicated int
	releaseRequested bool
	// streakError is the error of the current failure streak as status shows it ("" when none):
	// recovered moves it to LastRecoveredError.
	streakError string
	// renamesRun is the apply run whose renames the status followed, renamesSeen how many.
	renamesRun  string
	renamesSeen int

	// modify-objects: modifying while one runs; merging while the task's stream must stay stopped;
	// applyRunning while an apply run of the task's stream is in flight; skipBefore: the added
	// tables' changes the stream skips (the helper applied them).
	modifying, merging, applyRunning bool
	copying                          int // chunk copy activities running (QueryLoadShare)
	metrics                          taskMetrics
	skipBefore                       []api.SkipBefore

	alerts          []api.AlertEvent // queued for the sender
	alertSending    bool
	latencyAlerting bool // the lag is above alerts.latency_seconds and was reported

	pauseCh, resumeCh, releaseCh, progressCh, verifyCh workflow.ReceiveChannel
	// verifyWhenStreaming: the comparison after the load had no snapshot; incremental starts one.
	verifyWhenStreaming bool
	// drainReq asks the listener to take every signal delivered so far (syncSignals); drains
	// counts the drains it did.
	drainReq workflow.Channel
	drains   int
}

// SyncTask runs one sync task (TASKSPEC.md). carry is nil when a user starts the task.
func SyncTask(ctx workflow.Context, s spec.Spec, carry *Carry) error {
	s.ApplyDefaults()
	if err := s.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "invalid_spec", nil)
	}
	w := &task{spec: s, status: api.Status{Task: s.Name, Phase: api.PhasePrechecking, Tables: []api.TableStatus{}}}
	if carry != nil {
		w.carry = *carry
	}
	if w.carry.HistoryLimit == 0 {
		w.carry.HistoryLimit = 10000
	}
	if w.carry.RetryUnit == 0 {
		w.carry.RetryUnit = time.Minute
	}
	if w.carry.Status != nil {
		// A continued run takes its state before it registers its handlers: an update or query
		// delivered with the run's first task is handled at registration, and must see it.
		w.status = *w.carry.Status
		w.tables = w.carry.Tables
		w.skipBefore = w.carry.SkipBefore
		w.pauseRequested = w.carry.Paused
		w.setPhase(api.PhaseIncremental)
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, api.QueryStatus, func() (api.Status, error) { return w.status, nil },
		workflow.QueryHandlerOptions{Description: "The task now: phase, step, per-table load progress, applied position and lag, retry state, last error, schema changes, precheck and verify results (skein status prints it)"}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, api.QueryTables, func() ([]spec.TableMap, error) { return w.tables, nil },
		workflow.QueryHandlerOptions{Description: "The selected tables with their destination names, column renames and types, filters and operations"}); err != nil {
		return err
	}
	if err := workflow.SetQueryHandlerWithOptions(ctx, api.QueryLoadShare, func() (int, error) { return max(1, w.copying), nil },
		workflow.QueryHandlerOptions{Description: internalHandler + "chunk copies running, for the worker's connection budget"}); err != nil {
		return err
	}
	w.listen(ctx)
	if err := workflow.SetUpdateHandlerWithOptions(ctx, api.UpdateSequences, w.syncSequences, workflow.UpdateHandlerOptions{
		Validator:   w.validateSequences,
		Description: "Cutover: set every destination sequence to the source's value plus the offset given (a number); returns the sequences set",
	}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, api.UpdateModifyObjects, w.modifyObjects, workflow.UpdateHandlerOptions{
		Validator:   w.validateModify,
		Description: `Add and remove tables while the others stream: the new objects list, as in the spec ([{"schema": "public", "tables": [{"name": "orders"}]}]); returns what was added and removed`,
	}); err != nil {
		return err
	}

	w.publishSearchAttributes(ctx)
	w.showCurrentDetails(ctx)
	w.metrics = newTaskMetrics(ctx, s.Name)
	workflow.Go(ctx, func(ctx workflow.Context) {
		shown := ""
		for {
			if err := workflow.Await(ctx, func() bool { return w.status.Phase != shown }); err != nil {
				return
			}
			w.metrics.phase(shown, w.status.Phase)
			shown = w.status.Phase
		}
	})
	if s.Alerts.Enabled() {
		workflow.Go(ctx, w.sendAlerts)
	}

	workCtx, cancelWork := workflow.WithCancel(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		_ = workflow.Await(ctx, func() bool { return w.releaseRequested })
		cancelWork()
	})

	var err error
	if w.carry.Status == nil {
		err = w.initialLoad(workCtx)
	}
	if err == nil && s.IncrementalSync() {
		err = w.incremental(workCtx)
	}
	var can *workflow.ContinueAsNewError
	switch {
	case errors.As(err, &can):
		return err
	case w.releaseRequested:
		return w.release(ctx)
	case err != nil:
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != "precheck_failed" {
			w.status.Phase = api.PhaseFailed
			w.status.LastError = errorText(err)
			w.alert(api.AlertFailed, w.status.LastError)
			w.flushAlerts(ctx)
		}
		return err
	}
	// Without incremental sync the task is done: remove the bookkeeping (no slot exists).
	if err := w.call(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Minute}, api.ActivityRelease, nil, s); err != nil {
		return err
	}
	w.setPhase(api.PhaseFinished)
	return nil
}

// listen turns signals into flags the phases wait on.
func (w *task) listen(ctx workflow.Context) {
	w.pauseCh = workflow.GetSignalChannelWithOptions(ctx, api.SignalPause, workflow.SignalChannelOptions{
		Description: "Stop writing to the destination; the slot keeps the changes (no input)"})
	w.resumeCh = workflow.GetSignalChannelWithOptions(ctx, api.SignalResume, workflow.SignalChannelOptions{
		Description: "Continue a paused or failed task where it stopped (no input)"})
	w.releaseCh = workflow.GetSignalChannelWithOptions(ctx, api.SignalRelease, workflow.SignalChannelOptions{
		Description: "Stop the task and remove what Skein created: slot, publication, capture triggers, bookkeeping (no input)"})
	w.progressCh = workflow.GetSignalChannelWithOptions(ctx, api.SignalApplyProgress, workflow.SignalChannelOptions{
		Description: internalHandler + "the apply activity's progress report"})
	w.verifyCh = workflow.GetSignalChannelWithOptions(ctx, api.SignalVerifyReport, workflow.SignalChannelOptions{
		Description: internalHandler + "a Verify run's report"})
	w.drainReq = workflow.NewChannel(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(w.drainReq, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, nil)
				w.drainSignals()
				w.drains++
			})
			sel.AddReceive(w.pauseCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); w.onPause() })
			sel.AddReceive(w.resumeCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); w.onResume() })
			sel.AddReceive(w.releaseCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); w.releaseRequested = true })
			sel.AddReceive(w.progressCh, func(c workflow.ReceiveChannel, _ bool) {
				var p api.ApplyProgress
				c.Receive(ctx, &p)
				w.onProgress(p)
			})
			sel.AddReceive(w.verifyCh, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, &w.status.Verify)
			})
			sel.Select(ctx)
		}
	})
}

// syncSignals makes sure every signal delivered so far has been handled, before the run decides
// to continue as new. A signal that arrives while the listener waits in its selector is handed
// to the selector at once, and handled only when the listener runs next: a ReceiveAsync from
// another coroutine does not see it, and a run that continued as new then would lose it. So the
// listener itself drains, on request: it runs any branch it holds first.
func (w *task) syncSignals(ctx workflow.Context) {
	n := w.drains
	w.drainReq.Send(ctx, nil)
	_ = workflow.Await(ctx, func() bool { return w.drains > n })
}

// drainSignals takes every signal already in the channels (the listener runs it: syncSignals).
func (w *task) drainSignals() {
	for w.pauseCh.ReceiveAsync(nil) {
		w.onPause()
	}
	for w.resumeCh.ReceiveAsync(nil) {
		w.onResume()
	}
	for w.releaseCh.ReceiveAsync(nil) {
		w.releaseRequested = true
	}
	var p api.ApplyProgress
	for w.progressCh.ReceiveAsync(&p) {
		w.onProgress(p)
	}
	for w.verifyCh.ReceiveAsync(&w.status.Verify) { //nolint:revive // the receive stores the report
	}
}

func (w *task) onPause() { w.pauseRequested = true }
func (w *task) onResume() {
	w.resumes++
	w.pauseRequested = false
}

// awaitResume waits for a resume signal newer than the call, or release.
func (w *task) awaitResume(ctx workflow.Context) error {
	seen := w.resumes
	return workflow.Await(ctx, func() bool { return w.resumes > seen || w.releaseRequested })
}

func (w *task) onProgress(p api.ApplyProgress) {
	w.progressSeq++
	if w.status.Phase == api.PhaseRetrying {
		// Apply runs again: the streak is over.
		w.status.Phase = w.phase
	}
	w.recovered()
	if p.AppliedLSN != "" && p.AppliedLSN != "0/0" {
		w.status.AppliedLSN = p.AppliedLSN
	}
	w.status.LagBytes = p.LagBytes
	w.status.LagSeconds = p.LagSeconds
	w.status.Changes = p.Counts
	// Counts start over with each apply run (also a retried one): add what this run applied
	// since its last report.
	if p.Counts.Transactions < w.runCounts.Transactions || p.Counts.SchemaChanges < w.runCounts.SchemaChanges ||
		p.Counts.SchemaChangesSkipped < w.runCounts.SchemaChangesSkipped {
		w.runCounts = api.Counts{}
	}
	if p.NotReplicated < w.runNotReplicated {
		w.runNotReplicated = 0
	}
	if d := p.Counts.SchemaChanges - w.runCounts.SchemaChanges; d > 0 {
		w.status.SchemaChanges.Applied += d
		w.metrics.schemaChanges("applied", d)
	}
	if d := p.Counts.SchemaChangesSkipped - w.runCounts.SchemaChangesSkipped; d > 0 {
		w.status.SchemaChanges.Skipped += d
		w.metrics.schemaChanges("skipped", d)
	}
	if d := p.NotReplicated - w.runNotReplicated; d > 0 {
		w.status.SchemaChanges.NotReplicated += int64(d)
		w.status.SchemaChanges.LastNotReplicated = p.LastNotReplicated
		w.metrics.schemaChanges("not_replicated", int64(d))
	}
	w.metrics.applied(api.Counts{Inserts: max(0, p.Counts.Inserts-w.runCounts.Inserts), Updates: max(0, p.Counts.Updates-w.runCounts.Updates),
		Deletes: max(0, p.Counts.Deletes-w.runCounts.Deletes), Truncates: max(0, p.Counts.Truncates-w.runCounts.Truncates)}, p.LagBytes, p.LagSeconds)
	w.runNotReplicated = p.NotReplicated
	w.runCounts = p.Counts
	if p.LastSchemaChange != "" {
		w.status.SchemaChanges.Last = p.LastSchemaChange
	}
	if p.Tables != nil {
		w.followTables(p.Tables, p.Run, p.Renamed)
	}
	w.pruneSkips(p.AppliedLSN)
	w.checkLatency()
}

// followTables takes the table list the stream reports after schema changes on the source
// changed it: tables created join (status notes them), renamed ones keep their entry under the
// new source name, dropped ones leave. Verification and modify-objects then use it.
func (w *task) followTables(tables []spec.TableMap, run string, renamed []spec.Rename) {
	w.tables = tables
	// Destination tables renamed with their source tables keep their entry (and progress). A run
	// reports every rename it did so far with each list: those not followed yet are new.
	if run != w.renamesRun {
		w.renamesRun, w.renamesSeen = run, 0
	}
	for _, r := range renamed[min(w.renamesSeen, len(renamed)):] {
		for i := range w.status.Tables {
			if w.status.Tables[i].Destination == r.From.String() {
				w.status.Tables[i].Destination = r.To.String()
			}
		}
	}
	w.renamesSeen = len(renamed)
	byDest := map[string]spec.TableMap{}
	for _, t := range tables {
		byDest[t.Dest.String()] = t
	}
	kept := w.status.Tables[:0]
	seen := map[string]bool{}
	for _, ts := range w.status.Tables {
		if t, ok := byDest[ts.Destination]; ok {
			ts.Source = t.Source.String()
			kept = append(kept, ts)
			seen[ts.Destination] = true
		}
	}
	for _, t := range tables {
		if !seen[t.Dest.String()] {
			kept = append(kept, api.TableStatus{Source: t.Source.String(), Destination: t.Dest.String(), State: api.TableDone, Note: api.NoteCreatedBySchemaChange})
		}
	}
	w.status.Tables = kept
}

func (w *task) setPhase(p string) {
	w.phase = p
	w.status.Phase = p
	w.status.Step = p
}

// initialLoad runs precheck, snapshot, schema and full load.
func (w *task) initialLoad(ctx workflow.Context) error {
	s := w.spec

	w.setPhase(api.PhasePrechecking)
	var items []api.Item
	if err := w.call(ctx, stepOptions, api.ActivityPrecheck, &items, s); err != nil {
		return err
	}
	w.status.Precheck = items
	if failed := api.Failed(items, s.IgnorePrecheck); len(failed) > 0 {
		w.setPhase(api.PhasePrecheckFailed)
		ids := make([]string, len(failed))
		for i, it := range failed {
			ids[i] = it.ID + ": " + it.Detail
		}
		w.status.LastError = "precheck failed: " + strings.Join(ids, "; ")
		return temporal.NewNonRetryableApplicationError(w.status.LastError, "precheck_failed", nil)
	}

	if err := w.call(ctx, stepOptions, api.ActivityResolveTables, &w.tables, s); err != nil {
		return err
	}
	w.status.Tables = make([]api.TableStatus, len(w.tables))
	for i, t := range w.tables {
		w.status.Tables[i] = api.TableStatus{Source: t.Source.String(), Destination: t.Dest.String(), State: api.TablePending}
	}
	if s.IncrementalSync() {
		if err := w.call(ctx, stepOptions, api.ActivityPreparePublication, nil, s, w.tables); err != nil {
			return err
		}
	}

	// The snapshot: the slot's (incremental) or a plain exported one, held by one worker.
	w.setPhase(api.PhaseSchema)
	var hold *snapshotHold
	if s.FullSync() || s.IncrementalSync() {
		var err error
		if hold, err = w.openSnapshot(ctx, api.SnapshotInput{Spec: s, WithSlot: s.IncrementalSync()}); err != nil {
			return err
		}
		defer hold.close(ctx)
	}

	schemaIn := api.SchemaInput{Spec: s, Tables: w.tables, Snapshot: hold.name()}
	if s.SchemaSync() {
		var rep api.SchemaReport
		if err := w.callBeforeLoad(ctx, stepOptions, api.ActivitySchemaPreData, &rep, &schemaIn, hold); err != nil {
			return err
		}
		w.recordSchema(rep) // pre-data warns too (function bodies that mention renamed names)
	} else if err := w.call(ctx, stepOptions, api.ActivityEnsureBookkeeping, nil, s); err != nil {
		return err
	}

	var built, linked []spec.QName // the tables whose keys (and foreign keys) the load added
	if s.FullSync() {
		w.setPhase(api.PhaseFullLoad)
		var err error
		if built, linked, err = w.fullLoad(ctx, schemaIn, longStepOptions, hold); err != nil {
			return err
		}
		if s.Verify.Mode != spec.VerifyNone {
			if err := w.verifyAfterLoad(ctx, schemaIn, longStepOptions); err != nil {
				return err
			}
		}
	}
	// The holder ends while the post-data step runs (it needs no snapshot).
	if workflow.GetVersion(ctx, "post-data-while-holder-ends", workflow.DefaultVersion, 1) == 1 {
		hold.letGo()
	} else {
		hold.release(ctx, w.releaseRequested)
	}

	if s.SchemaSync() {
		w.setPhase(api.PhasePostSchema)
		var rep api.SchemaReport
		post := schemaIn
		post.Built, post.Linked = built, linked
		if err := w.call(ctx, longStepOptions, api.ActivitySchemaPostData, &rep, post); err != nil {
			return err
		}
		w.recordSchema(rep)
	}
	hold.release(ctx, w.releaseRequested)
	return nil
}

// callBeforeLoad runs an activity that reads in's snapshot before any chunk is copied (the schema,
// the load plan). When the snapshot is lost, nothing is loaded yet: every table loads in a new
// snapshot (reload), in.Snapshot names it, and the activity runs again, reading there.
func (w *task) callBeforeLoad(ctx workflow.Context, opts workflow.ActivityOptions, fn, result any, in *api.SchemaInput,
	hold *snapshotHold) error {
	for {
		err := w.call(ctx, opts, fn, result, *in)
		if snapshotLost(err) && hold != nil && workflow.GetVersion(ctx, "reload-before-load", workflow.DefaultVersion, 1) == 1 {
			if in.Snapshot, err = w.reload(ctx, in.Spec, in.Tables, hold); err == nil {
				continue
			}
		}
		return err
	}
}

// recordSchema adds a schema step's report to the status.
func (w *task) recordSchema(rep api.SchemaReport) {
	w.status.Schema.Created = append(w.status.Schema.Created, rep.Created...)
	w.status.Schema.Skipped = append(w.status.Schema.Skipped, rep.Skipped...)
	w.status.Schema.Warned = append(w.status.Schema.Warned, rep.Warned...)
}

// verifyAfterLoad compares the loaded tables with the load's snapshot (verify.mode). When tables
// were reloaded in another snapshot, or the snapshot's holder ended during the comparison, there
// is no consistent point to compare with: an incremental task then verifies once it streams (a
// Verify child workflow, which re-checks what changes meanwhile), a full-only task leaves it to
// skein verify.
func (w *task) verifyAfterLoad(ctx workflow.Context, in api.SchemaInput, opts workflow.ActivityOptions) error {
	why := "tables were reloaded in a new snapshot after the load's snapshot was lost"
	if !w.reloaded() {
		var results []api.TableResult
		err := w.call(ctx, opts, api.ActivityVerify, &results, in)
		if !snapshotLost(err) {
			if err != nil {
				return err
			}
			w.status.Verify = results
			w.metrics.verified(results)
			var diff []string
			for _, r := range results {
				if !r.Equal {
					diff = append(diff, fmt.Sprintf("%s (source %d rows, destination %d rows; %d missing, %d extra, %d different)",
						r.Source, r.SourceRows, r.DestRows, r.Missing, r.Extra, r.Different))
				}
			}
			if len(diff) > 0 {
				w.status.LastError = "verification after the full load found differences: " + strings.Join(diff, ", ")
				workflow.GetLogger(ctx).Warn(w.status.LastError)
			}
			return nil
		}
		why = "the load's snapshot was lost during the comparison (its holder ended)"
	}
	if w.spec.IncrementalSync() && workflow.GetVersion(ctx, "verify-while-streaming", workflow.DefaultVersion, 1) == 1 {
		w.verifyWhenStreaming = true
		w.status.LastError = "verification after the full load deferred: " + why + "; the task compares the tables once it streams (workflow " +
			api.VerifyWorkflowID(w.spec.Name) + ")"
	} else {
		w.status.LastError = "verification after the full load skipped: " + why + "; run skein verify once the task streams"
	}
	workflow.GetLogger(ctx).Warn(w.status.LastError)
	return nil
}

// startStreamingVerify starts the task's Verify workflow as a child that outlives this run (it
// reports to the task by signal) and waits until it has started.
func (w *task) startStreamingVerify(ctx workflow.Context) {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:               api.VerifyWorkflowID(w.spec.Name),
		ParentClosePolicy:        enums.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowExecutionTimeout: 25 * time.Hour,
	})
	f := workflow.ExecuteChildWorkflow(cctx, api.VerifyWorkflowName, api.VerifyRequest{Task: w.spec.Name})
	if err := f.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		w.status.LastError = "verification while streaming not started: " + errorText(err) + "; run skein verify"
		workflow.GetLogger(ctx).Warn(w.status.LastError)
	}
}

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
		in := api.ApplyInput{Spec: w.spec, Tables: w.tables, MaxRun: w.carry.ApplyMaxRun, ReportEvery: w.carry.ApplyReportEvery,
			SkipBefore: w.skipBefore, StallAfter: w.carry.ApplyStallAfter}
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
	if w.carry.ApplyMaxRun > 0 {
		opts.StartToCloseTimeout = w.carry.ApplyMaxRun + time.Hour
	}
	return opts
}

func (w *task) historyFull(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetCurrentHistoryLength() >= w.carry.HistoryLimit || info.GetContinueAsNewSuggested()
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
	carry := w.carry
	carry.Status = &st
	carry.Tables = w.tables
	carry.SkipBefore = w.skipBefore
	carry.Paused = w.pauseRequested
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

// errContinuePaused asks the incremental loop to continue as new while the task stays paused.
var errContinuePaused = errors.New("paused task continues as new")

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
	every := 4 * w.carry.ApplyReportEvery
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

// alert queues an alert for the sender (when alerts are configured).
func (w *task) alert(kind, message string) {
	if !w.spec.Alerts.Enabled() {
		return
	}
	w.alerts = append(w.alerts, api.AlertEvent{Task: w.spec.Name, Kind: kind, Phase: w.status.Phase, Message: message,
		LagSeconds: w.status.LagSeconds, LagBytes: w.status.LagBytes})
}

// checkLatency raises a latency alert when the lag goes above alerts.latency_seconds, once until
// it comes back below.
func (w *task) checkLatency() {
	limit := w.spec.Alerts.LatencySeconds
	if limit <= 0 {
		return
	}
	over := w.status.LagSeconds > float64(limit)
	if over && !w.latencyAlerting {
		w.alert(api.AlertLatency, fmt.Sprintf("apply lag %.1fs is above alerts.latency_seconds (%d)", w.status.LagSeconds, limit))
	}
	w.latencyAlerting = over
}

// sendAlerts sends queued alerts one by one, retrying each; it never blocks the task's work.
func (w *task) sendAlerts(ctx workflow.Context) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
			MaximumInterval: time.Minute, MaximumAttempts: 10},
	})
	for {
		if err := workflow.Await(ctx, func() bool { return len(w.alerts) > 0 }); err != nil {
			return
		}
		ev := w.alerts[0]
		w.alertSending = true
		err := workflow.ExecuteActivity(actx, api.ActivityAlert, api.AlertInput{Event: ev, WebhookURL: w.spec.Alerts.WebhookURL, WebhookURLSecret: w.spec.Alerts.WebhookURLSecret}).Get(ctx, nil)
		w.alerts = w.alerts[1:]
		w.alertSending = false
		if err != nil {
			workflow.GetLogger(ctx).Warn("alert not delivered", "kind", ev.Kind, "error", err)
		}
	}
}

// flushAlerts gives queued alerts up to a minute to go out before the run ends.
func (w *task) flushAlerts(ctx workflow.Context) {
	if len(w.alerts) == 0 && !w.alertSending {
		return
	}
	_, _ = workflow.AwaitWithTimeout(ctx, time.Minute, func() bool { return len(w.alerts) == 0 && !w.alertSending })
}

// release stops everything and removes what Skein created on both sides.
func (w *task) release(ctx workflow.Context) error {
	w.setPhase(api.PhaseReleasing)
	opts := workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Minute}
	w.releaseRequested = false // call() must not stop on it now
	if err := w.call(ctx, opts, api.ActivityRelease, nil, w.spec); err != nil {
		return err
	}
	w.setPhase(api.PhaseReleased)
	w.status.LagBytes, w.status.LagSeconds = 0, 0
	w.recovered()
	return nil
}

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
		window := time.Duration(minutes) * w.carry.RetryUnit
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
		backoff := min(time.Duration(1<<min(attempts-1, 6))*time.Second, time.Minute)
		if _, err := workflow.AwaitWithTimeout(ctx, backoff, func() bool { return w.releaseRequested }); err != nil {
			return err
		}
	}
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

// afterFailures tells an apply run how many runs of its streak failed before it (each run is a
// single attempt: the retries are call's loop), so that it applies its first changes statement by
// statement and an error names the exact change.
func afterFailures(args []any, failed int) []any {
	if failed == 0 || len(args) != 1 {
		return args
	}
	in, ok := args[0].(api.ApplyInput)
	if !ok {
		return args
	}
	in.FailedAttempts = failed
	return []any{in}
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

// statusIndexes maps each source table (spec.QName.String()) to its entry in status.Tables.
func (w *task) statusIndexes() map[string]int {
	at := make(map[string]int, len(w.status.Tables))
	for i, t := range w.status.Tables {
		at[t.Source] = i
	}
	return at
}

// statusIndex finds a source table's entry in at (statusIndexes).
func statusIndex(at map[string]int, src spec.QName) int {
	i, ok := at[src.String()]
	if !ok {
		panic("table " + src.String() + " has no status entry") // every selected table has one
	}
	return i
}
