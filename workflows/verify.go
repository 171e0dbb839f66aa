package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// Verify compares every table of a task: in checksum mode chunk by chunk, differences narrowed
// down to rows. A running task must be in incremental (its changes keep streaming while the
// comparison waits for them); a closed task is compared as the databases are.
func Verify(ctx workflow.Context, req api.VerifyRequest) (api.VerifyReport, error) {
	rep := api.VerifyReport{Task: req.Task}
	if req.Task == "" {
		return rep, temporal.NewNonRetryableApplicationError("task: the id of the task to verify is required", "bad_request", nil)
	}
	short := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
	var info api.TaskInfo
	if err := retryConnection(ctx, func() error {
		return workflow.ExecuteActivity(short, api.ActivityDescribeTask, req.Task).Get(ctx, &info)
	}); err != nil {
		return rep, err
	}
	if info.Running && info.Phase != api.PhaseIncremental {
		return rep, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"task %s is %s: verify compares a running task while it is incremental (or once it has ended)", req.Task, info.Phase),
			"bad_phase", nil)
	}
	s := info.Spec
	s.ApplyDefaults()
	if s.Verify.Mode == spec.VerifyNone {
		s.Verify.Mode = spec.VerifyChecksum
	}
	// A running task's own list (it follows schema changes on the source), else the spec's.
	tables := info.Tables
	if len(tables) == 0 {
		if err := retryConnection(ctx, func() error { return workflow.ExecuteActivity(short, api.ActivityResolveTables, s).Get(ctx, &tables) }); err != nil {
			return rep, err
		}
	}
	rep.Streaming = info.Running && s.IncrementalSync()
	long := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 24 * time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	in := api.VerifyTaskInput{Spec: s, Tables: tables, Streaming: rep.Streaming}
	if err := retryConnection(ctx, func() error { return workflow.ExecuteActivity(long, api.ActivityVerifyTask, in).Get(ctx, &rep.Tables) }); err != nil {
		return rep, err
	}
	rep.Equal = true
	for _, t := range rep.Tables {
		rep.Equal = rep.Equal && t.Equal
	}
	if info.Running {
		// The task may have ended since; its status then simply misses this report.
		err := workflow.SignalExternalWorkflow(ctx, req.Task, "", api.SignalVerifyReport, rep.Tables).Get(ctx, nil)
		if err != nil {
			workflow.GetLogger(ctx).Warn("verify report not delivered to the task", "task", req.Task, "error", err)
		}
	}
	return rep, nil
}

// retryConnection runs f again, with backoff, while it fails with a connection error (a server
// restarting, a network blip), for up to 15 minutes: a verification (also the one a task starts
// after a lost snapshot) outlives such faults. Other errors return at once.
func retryConnection(ctx workflow.Context, f func() error) error {
	start := workflow.Now(ctx)
	for attempts := 1; ; attempts++ {
		err := f()
		if err == nil || classOf(err) != api.Connection || workflow.Now(ctx).Sub(start) > 15*time.Minute ||
			workflow.GetVersion(ctx, "verify-retries-connection", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			return err
		}
		backoff := retryBackoff(attempts)
		workflow.GetLogger(ctx).Warn("verification: connection error, trying again", "error", err, "in", backoff)
		if err := workflow.Sleep(ctx, backoff); err != nil {
			return err
		}
	}
}
