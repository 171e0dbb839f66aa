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

// Carry is SyncTask's second input: the state a run hands whole to the run that continues it
// (nil on a task's first run), and the timings tests shorten. Both are embedded, so its JSON is
// flat, as it was before they were apart: recorded histories replay.
type Carry struct {
	State
	Tuning
}

// State is what a run hands to the run that continues it (continue-as-new).
type State struct {
	// Status and Tables are set when the run continues an earlier one that reached incremental.
	Status *api.Status     `json:"status,omitempty"`
	Tables []spec.TableMap `json:"tables,omitempty"`
	// SkipBefore carries the added tables' changes the task's stream must still skip.
	SkipBefore []api.SkipBefore `json:"skip_before,omitempty"`
	// Paused carries a pause across continue-as-new.
	Paused bool `json:"paused,omitempty"`
	// Repairs are the repairs asked for and not carried out yet.
	Repairs []api.RepairRequest `json:"repairs,omitempty"`
	// VerifyDue and VerifyRound: when the next scheduled verification starts (verify.every_minutes),
	// and its turn.
	VerifyDue   time.Time `json:"verify_due,omitempty"`
	VerifyRound int       `json:"verify_round,omitempty"`
}

// Tuning holds timings a deployment leaves at their defaults and tests shorten; they pass
// unchanged from run to run.
type Tuning struct {
	// HistoryLimit continues-as-new once the history has this many events (default 10,000).
	HistoryLimit int `json:"history_limit,omitempty"`
	// ApplyMaxRun bounds one apply activity run (default 30 minutes).
	ApplyMaxRun time.Duration `json:"apply_max_run,omitempty"`
	// ApplyReportEvery is the interval of apply progress reports (default 5s).
	ApplyReportEvery time.Duration `json:"apply_report_every,omitempty"`
	// ApplyStallAfter is how long a destination statement waits before the apply asks the
	// server whether it still works on it (default a minute; tests shorten it).
	ApplyStallAfter time.Duration `json:"apply_stall_after,omitempty"`
	// RetryUnit is the unit of the spec's retry windows (default a minute; tests shorten it).
	RetryUnit time.Duration `json:"retry_unit,omitempty"`
	// VerifyEvery replaces verify.every_minutes when set (tests).
	VerifyEvery time.Duration `json:"verify_every,omitempty"`
}

// errReleased ends the work of a phase when the task is being released.
var errReleased = errors.New("task is being released")

type task struct {
	spec   spec.Spec
	tuning Tuning
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

	// repairs: asked for (SignalRepair), not carried out yet; verifyDue/verifyRound: the
	// verification schedule (State).
	repairs     []api.RepairRequest
	verifyDue   time.Time
	verifyRound int

	pauseCh, resumeCh, releaseCh, progressCh, verifyCh, repairCh workflow.ReceiveChannel
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
	var state State
	if carry != nil {
		state, w.tuning = carry.State, carry.Tuning
	}
	if w.tuning.HistoryLimit == 0 {
		w.tuning.HistoryLimit = 10000
	}
	if w.tuning.RetryUnit == 0 {
		w.tuning.RetryUnit = time.Minute
	}
	continued := state.Status != nil
	if continued {
		// A continued run takes its state before it registers its handlers: an update or query
		// delivered with the run's first task is handled at registration, and must see it.
		w.status = *state.Status
		w.tables = state.Tables
		w.skipBefore = state.SkipBefore
		w.pauseRequested = state.Paused
		w.repairs, w.verifyDue, w.verifyRound = state.Repairs, state.VerifyDue, state.VerifyRound
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
	if !continued {
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
			w.metrics.verified(results, workflow.Now(ctx))
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

// errContinuePaused asks the incremental loop to continue as new while the task stays paused.
var errContinuePaused = errors.New("paused task continues as new")

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
