package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// SlotCheck reads the task's spec from its history and the state of its slot.
func SlotCheck(ctx workflow.Context, task string) (api.SlotState, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
	})
	var info api.TaskInfo
	if err := workflow.ExecuteActivity(ctx, api.ActivityDescribeTask, task).Get(ctx, &info); err != nil {
		return api.SlotState{}, err
	}
	var st api.SlotState
	err := workflow.ExecuteActivity(ctx, api.ActivitySlotState, info.Spec).Get(ctx, &st)
	return st, err
}
