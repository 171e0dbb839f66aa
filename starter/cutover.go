package main

import (
	"context"
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/temporalx"
)

func cutoverCmd() *cobra.Command {
	var maxLag int64
	var offset int64
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "cutover ID [--max-lag-bytes N] [--offset N] [--timeout D]",
		Short: "Wait until apply has caught up, pause it, set the destination sequences, and say what to switch",
		Long: `cutover prepares the switch to the destination. Stop the writes on the source first: cutover
waits until the apply lag is at most --max-lag-bytes (three readings in a row), pauses the task (the
slot is kept, nothing is lost), sets every synced sequence and identity column on the destination to
the source's value plus --offset, and prints what the operator switches. Afterwards: skein release ID
to finish, or skein resume ID to go back to streaming.`,
		Args: exactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			ctx, id, out := cmd.Context(), args[0], cmd.OutOrStdout()
			if offset < 0 {
				return usageError{fmt.Errorf("--offset %d is negative", offset)}
			}
			st, err := queryStatus(ctx, c, id)
			if err != nil {
				return err
			}
			if st.Phase != api.PhaseIncremental {
				return usageError{fmt.Errorf("task %s is %s: cutover needs it incremental (resume it first if it is paused)", id, st.Phase)}
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			fmt.Fprintf(out, "waiting until the apply lag is at most %s (stop the writes on the source now)\n", humanize.IBytes(uint64(maxLag)))
			good := 0
			for good < 3 {
				select {
				case <-ctx.Done():
					return fmt.Errorf("cutover %s: the lag did not come down within %s (last: %s); are the writes on the source stopped?",
						id, timeout, humanize.IBytes(uint64(st.LagBytes)))
				case <-time.After(time.Second):
				}
				if st, err = queryStatus(ctx, c, id); err != nil {
					return err
				}
				if st.Phase != api.PhaseIncremental {
					return fmt.Errorf("cutover %s: the task became %s", id, st.Phase)
				}
				if st.LagBytes <= maxLag {
					good++
				} else {
					good = 0
				}
			}
			fmt.Fprintf(out, "caught up: applied through %s, lag %s / %.1fs\n", st.AppliedLSN, humanize.IBytes(uint64(st.LagBytes)), st.LagSeconds)
			if err := c.SignalWorkflow(ctx, id, "", api.SignalPause, nil); err != nil {
				return fmt.Errorf("cutover %s: pause: %w", id, err)
			}
			for st.Phase != api.PhasePaused {
				time.Sleep(300 * time.Millisecond)
				if st, err = queryStatus(ctx, c, id); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "apply paused (the slot keeps every later change)\n")
			h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
				WorkflowID: id, UpdateName: api.UpdateSequences, Args: []any{offset},
				WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			var set []string
			if err == nil {
				err = h.Get(ctx, &set)
			}
			if err != nil {
				return fmt.Errorf("cutover %s: sequences: %w", id, err)
			}
			fmt.Fprintf(out, "%d sequences set on the destination (source value + %d)\n", len(set), offset)
			s, err := temporalx.TaskSpec(ctx, c, id)
			if err != nil {
				return err
			}
			d := s.Destination
			fmt.Fprintf(out, `
ready to switch:
  1. point the applications at the destination: host %s port %d database %s
  2. then finish: skein release %s  (drops the slot and publication on the source)
  to go back to streaming instead: skein resume %s
`, d.Host, d.Port, d.Database, id, id)
			return nil
		}),
	}
	cmd.Flags().Int64Var(&maxLag, "max-lag-bytes", 64*1024, "lag (source WAL not yet applied) that counts as caught up")
	cmd.Flags().Int64Var(&offset, "offset", 0, "add N to each sequence value (room for writes that race the cutover)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up waiting after this long")
	return cmd
}
