package api

// ReleaseWorkflowName cleans up after a task whose workflow can no longer take the release signal
// (terminated, failed, timed out): `skein release` starts it with the task's spec.
const ReleaseWorkflowName = "Release"

// UpdateModifyObjects changes the synchronized objects of a running task (argument: the new
// objects list). `skein modify ID -f objects.yaml` sends it.
const UpdateModifyObjects = "modify-objects"

// ModifyResult is what modify-objects changed.
type ModifyResult struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
}

// PrecheckWorkflowName runs the precheck items alone, for `skein precheck`: a worker holds the
// secrets, so the CLI asks one through Temporal.
const PrecheckWorkflowName = "Precheck"

// SlotCheckWorkflowName tells whether an ended task left its replication slot on the source
// (`skein list` asks for tasks that were terminated, cancelled, timed out or failed).
const SlotCheckWorkflowName = "SlotCheck"

// VerifyWorkflowName compares a task's source and destination on demand (`skein verify ID`; from
// the Temporal CLI: `temporal workflow execute --type Verify --task-queue skein --input
// '{"task":"ID"}'`).
const VerifyWorkflowName = "Verify"

// VerifyWorkflowID is the workflow id of task's verification: one at a time per task.
func VerifyWorkflowID(task string) string { return task + "-verify" }

// SignalVerifyReport carries a finished verification's results to its running task, so they show
// in the task's status and history.
const SignalVerifyReport = "verify-report"

// VerifyRequest names the task to verify.
type VerifyRequest struct {
	Task string `json:"task"`
}

// VerifyReport is the result of a verification.
type VerifyReport struct {
	Task string `json:"task"`
	// Equal is true when no table differs.
	Equal bool `json:"equal"`
	// Streaming is true when the task applied changes during the comparison: differences were
	// re-checked once the apply had passed them.
	Streaming bool          `json:"streaming"`
	Tables    []TableResult `json:"tables"`
}
