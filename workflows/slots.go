package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/cdc"
)

// SlotCheck reads the task's spec from its history and the state of its slot.
func SlotCheck(ctx workflow.Context, task string) (cdc.SlotState, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
	})
	var info activities.TaskInfo
	if err := workflow.ExecuteActivity(ctx, acts.DescribeTask, task).Get(ctx, &info); err != nil {
		return cdc.SlotState{}, err
	}
	var st cdc.SlotState
	err := workflow.ExecuteActivity(ctx, acts.SlotState, info.Spec).Get(ctx, &st)
	return st, err
}
