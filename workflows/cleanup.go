package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/spec"
)

// ReleaseWorkflowName cleans up after a task whose workflow can no longer take the release signal
// (terminated, failed, timed out): `skein release` starts it with the task's spec.
const ReleaseWorkflowName = "Release"

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
	return workflow.ExecuteActivity(ctx, acts.Release, s).Get(ctx, nil)
}
