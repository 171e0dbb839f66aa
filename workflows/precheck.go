package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// Precheck runs the precheck items of s once and returns them.
func Precheck(ctx workflow.Context, s spec.Spec) ([]api.Item, error) {
	s.ApplyDefaults()
	if err := s.Validate(); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "invalid_spec", nil)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var items []api.Item
	err := workflow.ExecuteActivity(ctx, api.ActivityPrecheck, s).Get(ctx, &items)
	return items, err
}
