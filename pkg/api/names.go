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
	// Repair fixes every difference found (skein verify --repair), at a known source position
	// in the task's change stream (README: Verification and repair).
	Repair bool `json:"repair,omitempty"`
	// Round is the turn of a scheduled verification: with verify.sample_percent below 100 the
	// rounds take the chunks by turn, so that every chunk is compared over 100/sample_percent
	// rounds; Scheduled marks the task's own verifications.
	Round     int  `json:"round,omitempty"`
	Scheduled bool `json:"scheduled,omitempty"`
}

// SignalRepair asks a running task to repair what its verification found (RepairRequest). The
// Verify workflow sends it; the task answers with SignalRepairDone.
const SignalRepair = "repair"

// SignalRepairDone carries a repair's outcome (RepairOutcome) from the task to the verification
// that asked for it.
const SignalRepairDone = "repair-done"

// RepairRequest names a repair whose targets a verification recorded on the destination (the
// keys never enter a workflow's history) and the workflow waiting for it.
type RepairRequest struct {
	ID   string `json:"id"`
	From string `json:"from"` // the waiting workflow's id
}

// RepairOutcome is what a repair did.
type RepairOutcome struct {
	ID     string        `json:"id"`
	Tables []TableRepair `json:"tables,omitempty"`
	// Position is the source position the rows were read at: every change committed before it
	// was applied before the repair, every later one after it.
	Position string `json:"position,omitempty"`
	Error    string `json:"error,omitempty"`
	// BarrierSeconds is how long the position took to set (a temporary slot waits for the
	// source's running transactions); CatchUpSeconds how long the stream took to reach it, and
	// WriteSeconds how long the repair's writes held the stream. The lag grows by about
	// BarrierSeconds + WriteSeconds.
	BarrierSeconds float64 `json:"barrier_seconds,omitempty"`
	CatchUpSeconds float64 `json:"catch_up_seconds,omitempty"`
	WriteSeconds   float64 `json:"write_seconds,omitempty"`
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
	// Repaired is true when a repair was asked for and fixed every difference found: a new
	// verification finds none (Equal describes the comparison before the repair).
	Repaired bool `json:"repaired,omitempty"`
	// RepairPosition is the source position the repaired rows were read at.
	RepairPosition string `json:"repair_position,omitempty"`
}
