package workflows

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// validateModify accepts the update only while the task streams and the new list is a valid
// objects list, so a rejected request leaves no trace in the history. The list is decoded here as
// skein modify decodes it (spec.ParseObjects: unknown fields and wrong types are named), whatever
// client sent it.
func (w *task) validateModify(raw json.RawMessage) error {
	// The request itself first: what is wrong with it holds whatever the task is doing.
	objs, err := spec.ParseObjects(raw)
	if err != nil {
		return badRequest(err)
	}
	if w.modifying {
		return badRequest(errors.New("another modify-objects is in progress; wait for it to finish"))
	}
	if w.status.Phase != api.PhaseIncremental {
		return badRequest(fmt.Errorf("the task is %s: objects can be modified while it is incremental", w.status.Phase))
	}
	ns := w.spec
	ns.Objects = objs
	if err := ns.Validate(); err != nil {
		return badRequest(err)
	}
	return nil
}

// badRequest marks a rejected request (the CLI exits 2).
func badRequest(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), "bad_request", nil)
}

// modifyObjects adds and removes tables while the others keep streaming. An added table gets its
// own slot (the helper's, see spec.Helper) with an exported snapshot, its schema and a full load
// in that snapshot, and its changes from the helper stream until it has caught up. Then the task's
// stream stops for a moment: the table joins the task's publication, the helper applies up to a
// source position after that, and the task's stream takes over, skipping the added tables'
// changes the helper applied. Removed tables leave the publication; their rows stay.
//
// Until the added tables' load starts, a request that cannot be carried out (a table or schema the
// source lacks, a mapping that changed) returns its error and leaves the task as it was: nothing
// was created on either side, the status does not change, the stream goes on.
func (w *task) modifyObjects(ctx workflow.Context, raw json.RawMessage) (api.ModifyResult, error) {
	w.modifying = true
	defer func() { w.modifying = false }()
	var res api.ModifyResult
	objs, err := spec.ParseObjects(raw) // the validator accepted it
	if err != nil {
		return res, badRequest(err)
	}
	ns := w.spec
	ns.Objects = objs
	tables, err := w.resolveForModify(ctx, ns)
	if err != nil {
		return res, err
	}
	added, removed, err := diffTables(w.tables, tables)
	if err != nil {
		return res, badRequest(err)
	}
	for _, t := range added {
		res.Added = append(res.Added, t.Source.String())
	}
	for _, t := range removed {
		res.Removed = append(res.Removed, t.Source.String())
	}
	if len(added) == 0 && len(removed) == 0 {
		w.spec.Objects = objs
		return res, nil
	}
	helper := ns.Helper()
	var joinAt string // the helper applied the added tables' changes committed before it
	if len(added) > 0 && workflow.GetVersion(ctx, "modify-precheck", workflow.DefaultVersion, 1) == 1 {
		if err := w.precheckAdded(ctx, ns, added); err != nil {
			return res, err
		}
	}
	if len(added) > 0 {
		if err := w.loadAdded(ctx, ns, added); err != nil {
			return res, err
		}
	}

	// The switch: the task's stream stops, the publication changes, the helper finishes.
	w.merging = true
	defer func() { w.merging = false }()
	if err := workflow.Await(ctx, func() bool { return !w.applyRunning }); err != nil {
		return res, err
	}
	if err := w.call(ctx, stepOptions, api.ActivityPreparePublication, nil, ns, tables); err != nil {
		return res, err
	}
	if len(added) > 0 {
		var after string
		if err := w.call(ctx, stepOptions, api.ActivitySourcePosition, &after, ns); err != nil {
			return res, err
		}
		// Runs end after ApplyMaxRun: go on until the helper has passed the switch point.
		target, err := pglogrepl.ParseLSN(after)
		if err != nil {
			return res, err
		}
		for {
			var p api.ApplyProgress
			if err := w.call(ctx, w.applyOptions(), api.ActivityApply, &p,
				api.ApplyInput{Spec: helper, Tables: added, StopAt: after, Helper: true, MaxRun: w.tuning.ApplyMaxRun}); err != nil {
				return res, err
			}
			if flushed, err := pglogrepl.ParseLSN(p.FlushedLSN); err == nil && flushed >= target {
				joinAt = p.FlushedLSN
				break
			}
		}
		if err := w.call(ctx, stepOptions, api.ActivityRelease, nil, helper); err != nil {
			return res, err
		}
		for _, t := range added {
			w.skipBefore = append(w.skipBefore, api.SkipBefore{Table: t.Source, LSN: joinAt})
		}
	}
	w.tables = tables
	w.spec.Objects = objs
	w.status.Objects = objs
	kept := w.status.Tables[:0]
	for _, ts := range w.status.Tables {
		if !containsSource(removed, ts.Source) {
			kept = append(kept, ts)
		}
	}
	w.status.Tables = kept
	workflow.GetLogger(ctx).Info("objects modified", "added", res.Added, "removed", res.Removed, "join_at", joinAt)
	return res, nil
}

// resolveForModify expands a modify-objects list against the source's tables. It is not one of
// the task's retried calls: its errors go back to the caller, and the task's status and phase stay
// as they were. A connection error is tried again a few times, then returned too.
func (w *task) resolveForModify(ctx workflow.Context, ns spec.Spec) ([]spec.TableMap, error) {
	opts := workflow.ActivityOptions{StartToCloseTimeout: 2 * time.Minute, HeartbeatTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}}
	var tables []spec.TableMap
	var err error
	for attempt := 1; ; attempt++ {
		err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), api.ActivityResolveTables, ns).Get(ctx, &tables)
		if err == nil || classOf(err) != api.Connection || attempt == 3 {
			break
		}
		if err := workflow.Sleep(ctx, time.Duration(attempt)*5*time.Second); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, badRequest(fmt.Errorf("%s; the task goes on unchanged", errorText(err)))
	}
	return tables, nil
}

// precheckAdded runs the precheck on the added tables before anything is created for them: a
// table that exists on the destination already, a type or collation the destination lacks, no
// free replication slot for the helper... is refused with the items, and the task goes on as it
// was. (The items about the selection as a whole, foreign keys to unselected tables and long
// transactions, are left to the task's own precheck.)
func (w *task) precheckAdded(ctx workflow.Context, ns spec.Spec, added []spec.TableMap) error {
	check := ns.Helper()
	check.Objects = objectsOf(added)
	opts := workflow.ActivityOptions{StartToCloseTimeout: 6 * time.Minute, HeartbeatTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}}
	var items []api.Item
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), api.ActivityPrecheck, check).Get(ctx, &items); err != nil {
		return badRequest(fmt.Errorf("precheck of the added tables: %s; the task goes on unchanged", errorText(err)))
	}
	var failed []string
	for _, it := range api.Failed(items, ns.IgnorePrecheck) {
		if it.ID == "fk_parents_selected" || it.ID == "long_transactions" {
			continue
		}
		failed = append(failed, it.ID+": "+it.Detail)
	}
	if len(failed) > 0 {
		return badRequest(fmt.Errorf("the added tables fail the precheck (%s); the task goes on unchanged", strings.Join(failed, "; ")))
	}
	return nil
}

// objectsOf is the objects list that selects exactly tables, with their mappings.
func objectsOf(tables []spec.TableMap) []spec.Object {
	var objs []spec.Object
	at := map[string]int{}
	for _, t := range tables {
		i, ok := at[t.Source.Schema]
		if !ok {
			i = len(objs)
			at[t.Source.Schema] = i
			o := spec.Object{Schema: t.Source.Schema}
			if t.Dest.Schema != t.Source.Schema {
				o.To = t.Dest.Schema
			}
			objs = append(objs, o)
		}
		tab := spec.Table{Name: t.Source.Name, Columns: t.Columns, ColumnTypes: t.Types, Where: t.Where, Operations: t.Operations}
		if t.Dest.Name != t.Source.Name {
			tab.To = t.Dest.Name
		}
		objs[i].Tables = append(objs[i].Tables, tab)
	}
	return objs
}

// loadAdded creates the helper's publication and slot for the added tables, their schema, loads
// them in the slot's snapshot and lets the helper stream catch up with the source.
func (w *task) loadAdded(ctx workflow.Context, ns spec.Spec, added []spec.TableMap) error {
	helper := ns.Helper()
	for _, t := range added {
		w.status.Tables = append(w.status.Tables, api.TableStatus{Source: t.Source.String(), Destination: t.Dest.String(), State: api.TablePending})
	}
	if err := w.call(ctx, stepOptions, api.ActivityPreparePublication, nil, helper, added); err != nil {
		return err
	}
	hold, err := w.openSnapshot(ctx, api.SnapshotInput{Spec: helper, WithSlot: true})
	if err != nil {
		return err
	}
	defer hold.close(ctx)
	// The helper's name keeps the added tables' chunk bookkeeping apart (dropped with the helper).
	in := api.SchemaInput{Spec: helper, Tables: added, Snapshot: hold.name()}
	if ns.SchemaSync() {
		var rep api.SchemaReport
		if err := w.call(ctx, stepOptions, api.ActivitySchemaPreData, &rep, in); err != nil {
			return err
		}
		w.recordSchema(rep) // pre-data warns too (function bodies that mention renamed names)
	}
	if ns.FullSync() {
		built, linked, err := w.fullLoad(ctx, in, longStepOptions, nil)
		if err != nil {
			return err
		}
		in.Built, in.Linked = built, linked
	}
	// The holder ends while the post-data step runs (it needs no snapshot).
	if workflow.GetVersion(ctx, "post-data-while-holder-ends", workflow.DefaultVersion, 1) == 1 {
		hold.letGo()
	} else {
		hold.release(ctx, false)
	}
	if ns.SchemaSync() {
		var rep api.SchemaReport
		if err := w.call(ctx, longStepOptions, api.ActivitySchemaPostData, &rep, in); err != nil {
			return err
		}
		w.recordSchema(rep)
	}
	hold.release(ctx, false) // the helper's slot is free for its stream
	at := w.statusIndexes()
	for _, t := range added {
		w.status.Tables[statusIndex(at, t.Source)].State = api.TableDone
	}
	// Catch up while the task's stream keeps going, so the switch is short.
	var p api.ApplyProgress
	return w.call(ctx, w.applyOptions(), api.ActivityApply, &p,
		api.ApplyInput{Spec: helper, Tables: added, CatchUp: true, Helper: true, MaxRun: w.tuning.ApplyMaxRun})
}

// diffTables compares the selection before and after: tables added and removed. A table in both
// whose mapping changed is an error: remove it, then add it again.
func diffTables(before, after []spec.TableMap) (added, removed []spec.TableMap, err error) {
	old := map[spec.QName]spec.TableMap{}
	for _, t := range before {
		old[t.Source] = t
	}
	now := map[spec.QName]bool{}
	for _, t := range after {
		now[t.Source] = true
		prev, ok := old[t.Source]
		switch {
		case !ok:
			added = append(added, t)
		case !reflect.DeepEqual(prev, t):
			return nil, nil, fmt.Errorf("table %s: its mapping (name, columns, filter or operations) changed; modify-objects adds and removes tables: remove it in one modify, then add it in another", t.Source)
		}
	}
	for _, t := range before {
		if !now[t.Source] {
			removed = append(removed, t)
		}
	}
	return added, removed, nil
}

func containsSource(tables []spec.TableMap, src string) bool {
	for _, t := range tables {
		if t.Source.String() == src {
			return true
		}
	}
	return false
}

// pruneSkips drops skip entries the task's stream has passed.
func (w *task) pruneSkips(applied string) {
	lsn, err := pglogrepl.ParseLSN(applied)
	if err != nil || len(w.skipBefore) == 0 {
		return
	}
	kept := w.skipBefore[:0]
	for _, s := range w.skipBefore {
		if at, err := pglogrepl.ParseLSN(s.LSN); err != nil || at > lsn {
			kept = append(kept, s)
		}
	}
	w.skipBefore = kept
}
