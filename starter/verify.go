package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/temporalx"
)

func verifyCmd() *cobra.Command {
	var asJSON, repair bool
	cmd := &cobra.Command{
		Use:   "verify ID [--json] [--repair]",
		Short: "Compare source and destination (checksums per chunk, differences by key); exit 1 on any difference not repaired",
		Args:  exactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			ctx, id := cmd.Context(), args[0]
			if _, err := c.DescribeWorkflowExecution(ctx, id, ""); err != nil {
				var nf *serviceerror.NotFound
				if errors.As(err, &nf) {
					return usageError{fmt.Errorf("no task %s in namespace %s", id, temporalx.Namespace())}
				}
				return fmt.Errorf("verify %s: %w", id, err)
			}
			// One verification per task at a time: a second `skein verify` joins the running one,
			// which must then repair if this one is asked to.
			if repair {
				if err := repairJoinable(ctx, c, id); err != nil {
					return err
				}
			}
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID:                       api.VerifyWorkflowID(id),
				TaskQueue:                api.TaskQueue,
				WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
				WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
				WorkflowExecutionTimeout: 25 * time.Hour,
				StaticSummary:            "Skein verify of task " + id,
			}, api.VerifyWorkflowName, api.VerifyRequest{Task: id, Repair: repair})
			if err != nil {
				return fmt.Errorf("start verification of %s: %w", id, err)
			}
			stopProgress := func() {}
			if !asJSON {
				stopProgress = showVerifyProgress(ctx, c, run, cmd.ErrOrStderr())
			}
			var rep api.VerifyReport
			err = run.Get(ctx, &rep)
			stopProgress()
			if err != nil {
				var appErr *temporal.ApplicationError
				if errors.As(err, &appErr) && (appErr.Type() == "bad_phase" || appErr.Type() == "bad_request") {
					return usageError{errors.New(appErr.Message())}
				}
				return fmt.Errorf("verify %s (is a skein-worker running?): %w", id, err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintln(out, string(b))
			} else {
				renderVerify(out, rep)
			}
			switch {
			case rep.Equal, rep.Repaired:
				return nil
			case repair:
				return fmt.Errorf("verify %s: the destination differs from the source, and not every difference was repaired", id)
			}
			return fmt.Errorf("verify %s: the destination differs from the source", id)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"task","equal","streaming","tables":[...]}`)
	cmd.Flags().BoolVar(&repair, "repair", false, "repair every difference found with the source's rows, at a known position of the task's change stream")
	return cmd
}

// showVerifyProgress prints the chunks compared so far (from the activity's heartbeat) every two
// seconds, on a terminal line of its own, until stopped.
func showVerifyProgress(ctx context.Context, c client.Client, run client.WorkflowRun, w io.Writer) (stop func()) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		last := ""
		for {
			select {
			case <-done:
				if tty && last != "" {
					fmt.Fprintln(w)
				}
				return
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
			if err != nil {
				continue
			}
			for _, pa := range desc.GetPendingActivities() {
				var p api.VerifyProgress
				if pa.GetHeartbeatDetails() == nil || temporalx.DataConverter().FromPayloads(pa.GetHeartbeatDetails(), &p) != nil || p.Total == 0 {
					continue
				}
				line := fmt.Sprintf("compared %d/%d chunks %s", p.Done, p.Total, bar(int64(p.Done), int64(p.Total), p.Done == p.Total))
				if line == last {
					continue
				}
				last = line
				if tty {
					fmt.Fprintf(w, "\r%s", line)
				} else {
					fmt.Fprintln(w, line)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// renderVerify prints one line per table and the differing rows under it.
func renderVerify(w io.Writer, rep api.VerifyReport) {
	fmt.Fprintf(w, "%-32s %-32s %-6s %12s %12s %8s %8s %8s %s\n", "SOURCE", "DESTINATION", "RESULT",
		"SOURCE ROWS", "DEST ROWS", "MISSING", "EXTRA", "DIFFER", "CHUNKS")
	for _, t := range rep.Tables {
		result := "equal"
		if !t.Equal {
			result = "DIFFER"
		}
		fmt.Fprintf(w, "%-32s %-32s %-6s %12d %12d %8d %8d %8d %d/%d\n", t.Source, t.Destination, result,
			t.SourceRows, t.DestRows, t.Missing, t.Extra, t.Different+t.Changing, t.ChunksChecked, t.Chunks)
		for _, d := range t.Diffs {
			fmt.Fprintf(w, "    %-10s %s\n", d.Kind, d.Key)
		}
		if shown := int64(len(t.Diffs)); shown < t.Missing+t.Extra+t.Different+t.Changing {
			fmt.Fprintf(w, "    ... and %d more\n", t.Missing+t.Extra+t.Different+t.Changing-shown)
		}
		if t.Note != "" {
			fmt.Fprintf(w, "    note: %s\n", t.Note)
		}
		switch r := t.Repair; {
		case r == nil:
		case r.Refused != "":
			fmt.Fprintf(w, "    not repaired: %s\n", r.Refused)
		case r.Pending:
			fmt.Fprintln(w, "    not repaired yet")
		default:
			fmt.Fprintf(w, "    repaired: %s deleted, %s written from the source\n", countRows(r.Deleted), countRows(r.Inserted))
		}
	}
	switch {
	case rep.Equal:
		fmt.Fprintf(w, "\nthe destination equals the source (%d tables)\n", len(rep.Tables))
	case rep.Repaired:
		fmt.Fprintf(w, "\nthe destination differed from the source; every difference is repaired, with the source's rows at position %s\n", rep.RepairPosition)
	default:
		fmt.Fprintln(w, "\nthe destination DIFFERS from the source")
	}
	if rep.Streaming {
		fmt.Fprintln(w, "(compared while changes streamed: every difference was re-checked after the apply passed it)")
	}
}

// repairJoinable fails when a verification of task id runs that does not repair: joining it
// would not repair what it finds.
func repairJoinable(ctx context.Context, c client.Client, id string) error {
	desc, err := c.DescribeWorkflowExecution(ctx, api.VerifyWorkflowID(id), "")
	if err != nil || desc.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return nil // none runs (or none can be seen): start one
	}
	var req api.VerifyRequest
	if err := temporalx.FirstInput(ctx, c, api.VerifyWorkflowID(id), &req); err != nil || req.Repair {
		return nil
	}
	return usageError{fmt.Errorf("a verification of task %s without repair is running (workflow %s): wait until it ends, then run skein verify --repair again",
		id, api.VerifyWorkflowID(id))}
}

// countRows writes n rows, "1 row" for one.
func countRows(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}
