package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// TestTaskReadableInTemporal: what the Temporal UI and CLI show of a task, through the real dev
// server. The workflow's current details follow its phase and hold the status's figures; its
// handlers are described (internal ones say so); the start carries a summary; under constant
// writes the apply reports to the history once per interval, not once a second; the audit items
// (precheck, pause and resume with who sent them, a schema change, release) are in the history
// in order.
func TestTaskReadableInTemporal(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, _ := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-history", srcPG, dstPG)
	s.ApplyDefaults()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: s.Name, TaskQueue: api.TaskQueue,
		StaticSummary: s.Summary(), StaticDetails: s.Details()},
		api.WorkflowName, s, &workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 5 * time.Second}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), run.GetID(), "", "test over") })
	st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	metadata := func() *sdkpb.WorkflowMetadata {
		t.Helper()
		v, err := c.QueryWorkflow(ctx, run.GetID(), "", "__temporal_workflow_metadata")
		require.NoError(t, err)
		var md sdkpb.WorkflowMetadata
		require.NoError(t, v.Get(&md))
		return &md
	}
	testharness.Exec(t, src, `UPDATE shop.customers SET note = 'first' WHERE id = 1`)
	testharness.Eventually(t, 30*time.Second, func() error {
		d := metadata().GetCurrentDetails()
		for _, want := range []string{"**incremental**", fmt.Sprintf("Tables: %d of %d loaded", len(st.Tables), len(st.Tables)), "Applied through"} {
			if !strings.Contains(d, want) {
				return fmt.Errorf("current details lack %q:\n%s\nstatus: %+v", want, d, status(t, c, run.GetID()))
			}
		}
		return nil
	})
	md := metadata()
	described := map[string]string{}
	for _, d := range md.GetDefinition().GetQueryDefinitions() {
		described["query "+d.GetName()] = d.GetDescription()
	}
	for _, d := range md.GetDefinition().GetSignalDefinitions() {
		described["signal "+d.GetName()] = d.GetDescription()
	}
	for _, d := range md.GetDefinition().GetUpdateDefinitions() {
		described["update "+d.GetName()] = d.GetDescription()
	}
	for _, h := range []string{"query status", "query tables", "signal pause", "signal resume", "signal release", "update modify-objects", "update sequences"} {
		require.NotEmpty(t, described[h], "%s is described: %v", h, described)
		require.NotContains(t, described[h], "Internal")
	}
	for _, h := range []string{"signal " + activities.SignalApplyProgress, "signal " + api.SignalVerifyReport, "query " + api.QueryLoadShare} {
		require.True(t, strings.HasPrefix(described[h], "Internal to Skein"), "%s: %q", h, described[h])
	}
	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), "")
	require.NoError(t, err)
	var summary string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(desc.GetExecutionConfig().GetUserMetadata().GetSummary(), &summary))
	require.Contains(t, summary, "Skein task it-history: ")
	require.Contains(t, summary, "(schema + full + incremental)")

	// Constant writes for 20 s: the workflow hears of them at most once per 5 s interval (before,
	// once a second).
	before := countSignals(t, c, run.GetID(), activities.SignalApplyProgress)
	stop := startWriter(t, srcPG, 20*time.Millisecond, func(i int) []string {
		return []string{fmt.Sprintf(`UPDATE shop.customers SET note = 'h%d' WHERE id = %d`, i, 1+i%100)}
	})
	time.Sleep(20 * time.Second)
	require.Greater(t, stop(), 100)
	reports := countSignals(t, c, run.GetID(), activities.SignalApplyProgress) - before
	require.LessOrEqual(t, reports, 6, "progress reports in 20 s of writes")

	// The audit trail: pause and resume (who sent them), a schema change, release.
	bin := buildSkein(t)
	r := runSkein(t, bin, "pause", run.GetID(), "--identity", "ops:alice")
	require.Equal(t, 0, r.code, r.stderr)
	waitPhase(t, c, run.GetID(), api.PhasePaused, time.Minute)
	testharness.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(metadata().GetCurrentDetails(), "**paused**") {
			return fmt.Errorf("current details: %s", metadata().GetCurrentDetails())
		}
		return nil
	})
	r = runSkein(t, bin, "resume", run.GetID(), "--identity", "ops:bob")
	require.Equal(t, 0, r.code, r.stderr)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, time.Minute)
	testharness.Exec(t, src, `ALTER TABLE shop.orders ADD COLUMN audit_note text`)
	testharness.Eventually(t, time.Minute, func() error {
		if st := status(t, c, run.GetID()); !strings.Contains(st.SchemaChanges.Last, "audit_note") {
			return fmt.Errorf("schema change not reported yet: %+v", st.SchemaChanges)
		}
		return nil
	})
	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalRelease, nil))
	require.NoError(t, run.Get(ctx, nil))

	var trail []string
	it := c.GetWorkflowHistory(ctx, run.GetID(), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == "Precheck" {
			trail = append(trail, "precheck")
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
			switch a.GetSignalName() {
			case activities.SignalApplyProgress:
				var p activities.ApplyProgress
				require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &p))
				if strings.Contains(p.LastSchemaChange, "audit_note") && !strings.HasSuffix(strings.Join(trail, ","), "schema change") {
					trail = append(trail, "schema change")
				}
			case api.SignalRelease:
				trail = append(trail, "release")
			case api.SignalPause, api.SignalResume:
				trail = append(trail, a.GetSignalName()+" by "+a.GetIdentity())
			}
		}
	}
	require.Equal(t, []string{"precheck", "pause by ops:alice", "resume by ops:bob", "schema change", "release"}, trail)
}

func countSignals(t *testing.T, c client.Client, id, name string) int {
	t.Helper()
	n := 0
	it := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == name {
			n++
		}
	}
	return n
}
