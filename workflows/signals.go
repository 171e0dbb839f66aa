package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

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
	w.repairCh = workflow.GetSignalChannelWithOptions(ctx, api.SignalRepair, workflow.SignalChannelOptions{
		Description: internalHandler + "a Verify run asks for the repair of the differences it recorded"})
	w.drainReq = workflow.NewChannel(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(w.drainReq, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, nil)
				w.drainSignals(ctx)
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
				w.onVerifyReport(ctx)
			})
			sel.AddReceive(w.repairCh, func(c workflow.ReceiveChannel, _ bool) {
				var r api.RepairRequest
				c.Receive(ctx, &r)
				w.repairs = append(w.repairs, r)
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
func (w *task) drainSignals(ctx workflow.Context) {
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
	for w.verifyCh.ReceiveAsync(&w.status.Verify) {
		w.onVerifyReport(ctx)
	}
	var r api.RepairRequest
	for w.repairCh.ReceiveAsync(&r) {
		w.repairs = append(w.repairs, r)
	}
}

func (w *task) onPause() { w.pauseRequested = true }

// onVerifyReport takes a verification's report (status.Verify): its metrics, and an alert for
// differences that no repair fixed.
func (w *task) onVerifyReport(ctx workflow.Context) {
	w.metrics.verified(w.status.Verify, workflow.Now(ctx))
	var open []string
	for _, t := range w.status.Verify {
		if !t.Equal && (t.Repair == nil || t.Repair.Pending || t.Repair.Refused != "") {
			open = append(open, t.Source)
		}
	}
	if len(open) > 0 && workflow.GetVersion(ctx, "verify-alerts", workflow.DefaultVersion, 1) > workflow.DefaultVersion {
		w.alert(api.AlertVerify, fmt.Sprintf("verification found differences that are not repaired in %s (skein status shows them)", strings.Join(open, ", ")))
	}
}

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
