package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

func modifyCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "modify ID -f objects.yaml",
		Short: "Change the synchronized objects: added tables get schema and a full load, then join the stream",
		Args:  exactArgs(1),
		RunE: withClient(func(cmd *cobra.Command, c client.Client, args []string) error {
			if file == "" {
				return usageError{errors.New("-f objects.yaml is required (the new objects list, as in the task spec)")}
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return usageError{err}
			}
			objs, err := spec.ParseObjects(data)
			if err != nil {
				return usageError{fmt.Errorf("%s: %w", file, err)}
			}
			ctx, id, out := cmd.Context(), args[0], cmd.OutOrStdout()
			fmt.Fprintf(cmd.ErrOrStderr(), "modifying %s (added tables load first; skein status %s --watch shows their progress)\n", id, id)
			h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
				WorkflowID: id, UpdateName: api.UpdateModifyObjects, Args: []any{objs},
				WaitForStage: client.WorkflowUpdateStageAccepted,
			})
			if err == nil {
				var res api.ModifyResult
				if err = waitUpdate(ctx, h, &res); err == nil {
					fmt.Fprintf(out, "added: %s\nremoved: %s\n", list(res.Added), list(res.Removed))
					return nil
				}
			}
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && appErr.Type() == "bad_request" {
				return usageError{fmt.Errorf("modify %s rejected: %s", id, appErr.Message())}
			}
			return fmt.Errorf("modify %s: %w", id, err)
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the new objects list (YAML or JSON; a list, or a document with objects:)")
	return cmd
}

// waitUpdate waits for an accepted update's result, however long its work takes.
func waitUpdate(ctx context.Context, h client.WorkflowUpdateHandle, result any) error {
	for {
		pollCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err := h.Get(pollCtx, result)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
}

func list(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ", ")
}
