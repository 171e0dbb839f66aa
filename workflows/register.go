package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

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
