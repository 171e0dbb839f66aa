package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// Release drops the task's slot and publication on the source and its bookkeeping on the
// destination.
func Release(ctx workflow.Context, s spec.Spec) error {
	s.ApplyDefaults()
	if err := s.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "invalid_spec", nil)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	return workflow.ExecuteActivity(ctx, api.ActivityRelease, s).Get(ctx, nil)
}
