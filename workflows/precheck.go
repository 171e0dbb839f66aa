package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/precheck"
	"github.com/skein-dts/skein/pkg/spec"
)

// PrecheckWorkflowName runs the precheck items alone, for `skein precheck`: a worker holds the
// secrets, so the CLI asks one through Temporal.
const PrecheckWorkflowName = "Precheck"

// Precheck runs the precheck items of s once and returns them.
func Precheck(ctx workflow.Context, s spec.Spec) ([]precheck.Item, error) {
	s.ApplyDefaults()
	if err := s.Validate(); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "invalid_spec", nil)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var items []precheck.Item
	err := workflow.ExecuteActivity(ctx, acts.Precheck, s).Get(ctx, &items)
	return items, err
}
