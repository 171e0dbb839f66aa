package workflows

import (
	"time"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
)

// Register registers Skein's workflows on w.
func Register(w worker.WorkflowRegistry) {
	w.RegisterWorkflowWithOptions(SyncTask, workflow.RegisterOptions{Name: api.WorkflowName})
	w.RegisterWorkflowWithOptions(Precheck, workflow.RegisterOptions{Name: api.PrecheckWorkflowName})
	w.RegisterWorkflowWithOptions(Release, workflow.RegisterOptions{Name: api.ReleaseWorkflowName})
	w.RegisterWorkflowWithOptions(Verify, workflow.RegisterOptions{Name: api.VerifyWorkflowName})
	w.RegisterWorkflowWithOptions(SlotCheck, workflow.RegisterOptions{Name: api.SlotCheckWorkflowName})
}

// WorkerOptions are the worker settings the workflows rely on: sessions (the snapshot holder
// stays on the worker that created the snapshot) and frequent heartbeats (cancellation of the apply
// activity is noticed within seconds).
func WorkerOptions() worker.Options {
	return worker.Options{
		EnableSessionWorker:               true,
		MaxConcurrentSessionExecutionSize: 1000,
		MaxHeartbeatThrottleInterval:      2 * time.Second,
		DefaultHeartbeatThrottleInterval:  2 * time.Second,
		// Row values stay out of errors unless the task's spec says show_row_values.
		Interceptors: []interceptor.WorkerInterceptor{&activities.RowValuesInterceptor{}},
	}
}
