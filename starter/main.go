// Command skein starts and steers sync tasks. It talks to Temporal only, never to the databases:
// the worker holds the secrets. Exit codes: 0 success, 1 the check or task failed, 2 bad usage or
// bad spec.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/temporalx"
)

// usageError is bad usage or a bad spec: exit code 2.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := newRoot(os.Stdout).ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "skein:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func newRoot(out io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "skein",
		Short:         "Start and steer Skein sync tasks (PostgreSQL to PostgreSQL-compatible, on Temporal)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&identity, "identity", "",
		"who the task's history says did it (default $SKEIN_IDENTITY, or skein:<user>@<host>)")
	root.AddCommand(startCmd(), statusCmd(), listCmd(), codecServerCmd(),
		signalCmd("pause", api.SignalPause, "Stop writing to the destination; the slot is kept"),
		signalCmd("resume", api.SignalResume, "Resume a paused or failed task where it stopped"),
		releaseCmd(),
		precheckCmd(),
		modifyCmd(),
		verifyCmd(),
		sequencesCmd(),
		cutoverCmd(),
	)
	return root
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// withClient runs a command with a Temporal client that is closed when it returns.
func withClient(run func(cmd *cobra.Command, c client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := dial()
		if err != nil {
			return err
		}
		defer c.Close()
		return run(cmd, c, args)
	}
}

// identity is the --identity flag: the name the history records for this command's requests.
var identity string

func dial() (client.Client, error) {
	if _, err := temporalx.Encryption(); err != nil {
		return nil, err
	}
	conn, err := temporalx.ConnectionFromEnv(nil)
	if err != nil {
		return nil, err
	}
	id := identity
	if id == "" {
		id = temporalx.ClientIdentity()
	}
	c, err := client.Dial(conn.Options(client.Options{Logger: quietLogger{}, DataConverter: temporalx.DataConverter(), Identity: id}))
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (set TEMPORAL_ADDRESS): %w", temporalx.Address(), err)
	}
	return c, nil
}

func startCmd() *cobra.Command {
	var file, id string
	cmd := &cobra.Command{
		Use:   "start -f task.yaml [--id ID]",
		Short: "Validate a task spec and start it; prints the workflow id",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := readSpec(file)
			if err != nil {
				return err
			}
			if id == "" {
				id = s.Name
			}
			c, err := dial()
			if err != nil {
				return err
			}
			defer c.Close()
			run, err := c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{
				ID:                                       id,
				TaskQueue:                                api.TaskQueue,
				WorkflowIDConflictPolicy:                 enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
				WorkflowExecutionErrorWhenAlreadyStarted: true,
				StaticSummary:                            s.Summary(),
				StaticDetails:                            s.Details(),
			}, api.WorkflowName, s)
			if err != nil {
				var started *serviceerror.WorkflowExecutionAlreadyStarted
				if errors.As(err, &started) {
					return fmt.Errorf("task %s is already running: release it first or pass --id", id)
				}
				return fmt.Errorf("start task %s: %w", id, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), run.GetID())
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "task spec (YAML or JSON)")
	cmd.Flags().StringVar(&id, "id", "", "workflow id (default: the spec's name)")
	return cmd
}

// readSpec reads and validates a spec file; every problem is a usage error (exit 2).
func readSpec(file string) (spec.Spec, error) {
	if file == "" {
		return spec.Spec{}, usageError{errors.New("-f task.yaml is required")}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return spec.Spec{}, usageError{err}
	}
	s, err := spec.Parse(data)
	if err != nil {
		return spec.Spec{}, usageError{fmt.Errorf("%s: %w", file, err)}
	}
	return s, nil
}

func precheckCmd() *cobra.Command {
	var file string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "precheck -f task.yaml [--json]",
		Short: "Run the precheck items now (on a worker); exit 1 if any fails",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := readSpec(file)
			if err != nil {
				return err
			}
			c, err := dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 6*time.Minute)
			defer cancel()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID:                       fmt.Sprintf("%s-precheck-%d", s.Name, time.Now().UnixNano()),
				TaskQueue:                api.TaskQueue,
				WorkflowExecutionTimeout: 6 * time.Minute,
			}, api.PrecheckWorkflowName, s)
			if err != nil {
				return fmt.Errorf("start precheck: %w", err)
			}
			var items []api.Item
			if err := run.Get(ctx, &items); err != nil {
				return fmt.Errorf("precheck (is a skein-worker running?): %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.MarshalIndent(items, "", "  ")
				fmt.Fprintln(out, string(b))
			} else {
				renderPrecheck(out, items, s.IgnorePrecheck)
			}
			if failed := api.Failed(items, s.IgnorePrecheck); len(failed) > 0 {
				return fmt.Errorf("precheck failed: %d item(s) stop the task", len(failed))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "task spec (YAML or JSON)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print [{"id","level","passed","detail","fix"}]`)
	return cmd
}

func queryStatus(ctx context.Context, c client.Client, id string) (api.Status, error) {
	var st api.Status
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, id, "", api.QueryStatus)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return st, fmt.Errorf("no task %s in namespace %s", id, temporalx.Namespace())
		}
		return st, fmt.Errorf("query status of %s (is a skein-worker running?): %w", id, err)
	}
	if err := v.Get(&st); err != nil {
		return st, err
	}
	if st.Phase == api.PhaseIncremental {
		liveApply(qctx, c, id, &st)
	}
	return st, nil
}

// liveApply takes the applied position, lag and counts from the running apply activity's last
// heartbeat (every second) into st: the workflow hears of them once a minute (each report is an
// event in its history), the heartbeat is not in the history. Without a heartbeat st stays as
// the workflow has it.
func liveApply(ctx context.Context, c client.Client, id string, st *api.Status) {
	desc, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return
	}
	for _, pa := range desc.GetPendingActivities() {
		if pa.GetActivityType().GetName() != "Apply" || pa.GetHeartbeatDetails() == nil {
			continue
		}
		var p api.ApplyProgress
		if temporalx.DataConverter().FromPayloads(pa.GetHeartbeatDetails(), &p) != nil || p.AppliedLSN == "" || p.AppliedLSN == "0/0" {
			continue
		}
		st.AppliedLSN, st.LagBytes, st.LagSeconds, st.Changes = p.AppliedLSN, p.LagBytes, p.LagSeconds, p.Counts
	}
}

func statusCmd() *cobra.Command {
	var asJSON, watch, all bool
	cmd := &cobra.Command{
		Use:   "status ID [--json] [--watch] [--all]",
		Short: "Show phase, per-table progress and lag",
		Args:  exactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			out := cmd.OutOrStdout()
			for {
				st, err := queryStatus(cmd.Context(), c, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					b, _ := json.Marshal(st)
					fmt.Fprintln(out, string(b))
				} else {
					if watch {
						fmt.Fprint(out, "\033[H\033[2J")
					}
					renderStatus(out, st, all)
				}
				if !watch || terminal(st.Phase) {
					if st.Phase == api.PhaseFailed || st.Phase == api.PhasePrecheckFailed {
						return fmt.Errorf("task %s is %s", args[0], st.Phase)
					}
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(2 * time.Second):
				}
			}
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status query result as JSON")
	cmd.Flags().BoolVar(&watch, "watch", false, "refresh every 2 seconds until the task ends")
	cmd.Flags().BoolVar(&all, "all", false, fmt.Sprintf("list every table (without it, a task of more than %d tables shows totals and %d tables)", tableRows, tableRows))
	return cmd
}

func terminal(phase string) bool {
	switch phase {
	case api.PhaseReleased, api.PhaseFinished, api.PhasePrecheckFailed, api.PhaseFailed:
		return true
	}
	return false
}

func listCmd() *cobra.Command {
	var phase string
	cmd := &cobra.Command{
		Use:   "list [--phase P]",
		Short: "List tasks and their phases",
		Args:  exactArgs(0),
		RunE: withClient(func(cmd *cobra.Command, c client.Client, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%-40s %-16s %-12s %-20s %s\n", "TASK", "PHASE", "WORKFLOW", "STARTED", "SLOT")
			var token []byte
			byAttribute := true
			var leftover []string
			for {
				// A continued-as-new run is one task's history, not a task.
				query := "WorkflowType = '" + api.WorkflowName + "' AND ExecutionStatus != 'ContinuedAsNew'"
				if phase != "" && byAttribute {
					query += " AND SkeinPhase = '" + strings.ReplaceAll(phase, "'", "") + "'"
				}
				resp, err := c.ListWorkflow(cmd.Context(), &listRequest{
					Namespace: temporalx.Namespace(), Query: query, NextPageToken: token,
				})
				if err != nil && byAttribute && phase != "" {
					byAttribute = false // the namespace lacks SkeinPhase: filter on the status query
					continue
				}
				if err != nil {
					return fmt.Errorf("list tasks: %w", err)
				}
				for _, e := range resp.Executions {
					id := e.Execution.WorkflowId
					p := "-"
					if st, err := queryStatus(cmd.Context(), c, id); err == nil {
						p = st.Phase
					}
					if phase != "" && p != phase {
						continue
					}
					state := strings.ToLower(strings.TrimPrefix(e.Status.String(), "WORKFLOW_EXECUTION_STATUS_"))
					slot := slotColumn(cmd.Context(), c, id, e.Status)
					if strings.HasPrefix(slot, "LEFT") {
						leftover = append(leftover, id)
					}
					fmt.Fprintf(out, "%-40s %-16s %-12s %-20s %s\n", id, p, state, e.StartTime.AsTime().Local().Format(time.DateTime), slot)
				}
				token = resp.NextPageToken
				if len(token) == 0 {
					for _, id := range leftover {
						fmt.Fprintf(out, "\ntask %s ended without releasing what it created on the source (its replication slot keeps WAL, its event triggers write schema changes into it): run skein release %s\n", id, id)
					}
					return nil
				}
			}
		}),
	}
	cmd.Flags().StringVar(&phase, "phase", "", "only tasks in this phase")
	return cmd
}

func signalCmd(name, signalName, short string) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  exactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			if err := c.SignalWorkflow(cmd.Context(), args[0], "", signalName, nil); err != nil {
				var nf *serviceerror.NotFound
				if errors.As(err, &nf) {
					return fmt.Errorf("no running task %s", args[0])
				}
				return fmt.Errorf("%s %s: %w", name, args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s requested for %s\n", name, args[0])
			return nil
		}),
	}
}

func sequencesCmd() *cobra.Command {
	var offset int64
	cmd := &cobra.Command{
		Use:   "sequences ID [--offset N]",
		Short: "Set every synced sequence and identity column on the destination to the source's value plus N",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if offset < 0 {
				return usageError{fmt.Errorf("--offset %d is negative", offset)}
			}
			c, err := dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 11*time.Minute)
			defer cancel()
			h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
				WorkflowID: args[0], UpdateName: api.UpdateSequences, Args: []any{offset},
				WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			if err != nil {
				return fmt.Errorf("sequences %s: %w", args[0], err)
			}
			var set []string
			if err := h.Get(ctx, &set); err != nil {
				return fmt.Errorf("sequences %s: %w", args[0], err)
			}
			for _, line := range set {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d sequences set on the destination\n", len(set))
			return nil
		},
	}
	cmd.Flags().Int64Var(&offset, "offset", 0, "add N to each source value (room for writes that race the cutover)")
	return cmd
}

func releaseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "release ID",
		Short: "Finish: stop apply and remove Skein's slot, publication and bookkeeping (also of a terminated or failed task)",
		Args:  exactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			ctx, id, out := cmd.Context(), args[0], cmd.OutOrStdout()
			desc, err := c.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				var nf *serviceerror.NotFound
				if errors.As(err, &nf) {
					return fmt.Errorf("no task %s in namespace %s", id, temporalx.Namespace())
				}
				return fmt.Errorf("release %s: %w", id, err)
			}
			switch desc.WorkflowExecutionInfo.Status {
			case enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
				if err := c.SignalWorkflow(ctx, id, "", api.SignalRelease, nil); err != nil {
					return fmt.Errorf("release %s: %w", id, err)
				}
				fmt.Fprintf(out, "release requested for %s\n", id)
				return nil
			case enums.WORKFLOW_EXECUTION_STATUS_COMPLETED:
				fmt.Fprintf(out, "task %s has ended: nothing to release\n", id)
				return nil
			}
			// Terminated, failed, timed out or cancelled: the workflow cannot clean up; a Release
			// workflow does it with the task's spec, read from its history.
			s, err := temporalx.TaskSpec(ctx, c, id)
			if err != nil {
				return err
			}
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID: fmt.Sprintf("%s-release-%d", id, time.Now().UnixNano()), TaskQueue: api.TaskQueue,
				WorkflowExecutionTimeout: 10 * time.Minute,
			}, api.ReleaseWorkflowName, s)
			if err != nil {
				return fmt.Errorf("release %s: %w", id, err)
			}
			if err := run.Get(ctx, nil); err != nil {
				return fmt.Errorf("release %s (is a skein-worker running?): %w", id, err)
			}
			fmt.Fprintf(out, "released %s: slot, publication and bookkeeping removed\n", id)
			return nil
		}),
	}
}

// slotColumn tells what became of a task's replication slot: a running task uses it, a completed
// one released it, and for one that was terminated, cancelled, timed out or failed a worker looks.
func slotColumn(ctx context.Context, c client.Client, id string, st enums.WorkflowExecutionStatus) string {
	switch st {
	case enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return "in use"
	case enums.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return "-"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: fmt.Sprintf("%s-slotcheck-%d", id, time.Now().UnixNano()), TaskQueue: api.TaskQueue,
		WorkflowExecutionTimeout: 30 * time.Second,
	}, api.SlotCheckWorkflowName, id)
	if err != nil {
		return "? (" + err.Error() + ")"
	}
	var slot api.SlotState
	if err := run.Get(ctx, &slot); err != nil {
		return "? (is a skein-worker running?)"
	}
	switch {
	case slot.Exists && slot.Capture:
		return "LEFT OVER (and its schema-change triggers)"
	case slot.Exists:
		return "LEFT OVER"
	case slot.Capture:
		return "LEFT OVER schema-change triggers"
	}
	return "-"
}
