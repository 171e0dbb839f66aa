package api

import "github.com/skein-dts/skein/pkg/spec"

// Names that are part of the control surface (TASKSPEC.md).
const (
	TaskQueue     = "skein"
	WorkflowName  = "SyncTask"
	QueryStatus   = "status"
	SignalPause   = "pause"
	SignalResume  = "resume"
	SignalRelease = "release"
	// QueryLoadShare answers how many chunk copies of the full load run now: each takes that
	// share of the throttle limits (the CopyChunks activity asks every few seconds).
	QueryLoadShare = "load_share"
	// QueryTables answers the task's current table list (spec.TableMap, mappings included).
	QueryTables = "tables"
	// UpdateSequences sets the destination sequences from the source (argument: the offset to
	// add, >= 0); it returns what it set. `skein sequences ID [--offset N]` sends it.
	UpdateSequences = "sequences"
)

// Phases reported by the status query.
const (
	PhasePrechecking    = "prechecking"
	PhasePrecheckFailed = "precheck_failed"
	PhaseSchema         = "schema"
	PhaseFullLoad       = "full_load"
	PhasePostSchema     = "post_schema"
	PhaseIncremental    = "incremental"
	PhasePaused         = "paused"
	PhaseRetrying       = "retrying"
	PhaseFailed         = "failed"
	PhaseReleasing      = "releasing"
	PhaseReleased       = "released"
	PhaseFinished       = "finished"
)

// Table states.
const (
	TablePending = "pending"
	TableLoading = "loading"
	TableDone    = "done"
)

// Status is the answer to the status query.
type Status struct {
	Task  string `json:"task"`
	Phase string `json:"phase"`
	// Step is the phase of the work under a retrying, failed or paused phase (the same as Phase
	// otherwise): what is being retried.
	Step       string        `json:"step,omitempty"`
	Tables     []TableStatus `json:"tables"`
	AppliedLSN string        `json:"applied_lsn"`
	LagBytes   int64         `json:"lag_bytes"`
	LagSeconds float64       `json:"lag_seconds"`
	Retry      RetryState    `json:"retry"`
	// LastError is the error of the current failure streak (or a notice of the load's
	// verification); it is cleared when the streak ends, and kept in LastRecoveredError.
	LastError string `json:"last_error"`
	// LastRecoveredError is the error of the last failure streak the task recovered from.
	LastRecoveredError string `json:"last_recovered_error,omitempty"`
	Changes            Counts `json:"changes"`
	// SchemaChanges are the source's schema changes the stream applied or skipped, over the
	// task's life (Changes counts per apply run).
	SchemaChanges SchemaChanges `json:"schema_changes"`
	Precheck      []Item        `json:"precheck,omitempty"`
	Verify        []TableResult `json:"verify,omitempty"`
	// LastRepair is the last repair the task carried out in its change stream.
	LastRepair *RepairOutcome `json:"last_repair,omitempty"`
	Schema     SchemaReport   `json:"schema"`
	// Objects is the objects list after a modify-objects (the spec's otherwise).
	Objects []spec.Object `json:"objects,omitempty"`
}

// TableStatus is the progress of one table.
type TableStatus struct {
	Source       string `json:"source"`
	Destination  string `json:"destination"`
	State        string `json:"state"`
	RowsCopied   int64  `json:"rows_copied"`
	RowsEstimate int64  `json:"rows_estimate"`
	BytesCopied  int64  `json:"bytes_copied"`
	Chunks       int    `json:"chunks"`
	ChunksDone   int    `json:"chunks_done"`
	// Reloads counts the times the table's load started over in a new snapshot (its holder ended).
	Reloads int `json:"reloads,omitempty"`
	// Note says what is special about the table's sync (an unlogged table does not stream).
	Note string `json:"note,omitempty"`
}

// NoteCreatedBySchemaChange is the note of a table the source created while the task streamed.
const NoteCreatedBySchemaChange = "created on the source while streaming: its rows stream from its creation"

// NoteUnlogged is the note of an unlogged table in an incremental task.
const NoteUnlogged = "unlogged on the source: loaded, but its changes are not streamed"

// SchemaChanges counts the source's schema changes the stream applied to the destination, and
// those it skipped (tables whose operations leave out ddl), with the last one.
type SchemaChanges struct {
	Applied int64  `json:"applied"`
	Skipped int64  `json:"skipped"`
	Last    string `json:"last,omitempty"`
	// NotReplicated counts the changes of other objects in the selected schemas (views,
	// functions, types), which are not replicated while streaming; LastNotReplicated names the
	// last one.
	NotReplicated     int64  `json:"not_replicated,omitempty"`
	LastNotReplicated string `json:"last_not_replicated,omitempty"`
}

// RetryState is the current streak of failures, empty when there is none.
type RetryState struct {
	Class         string `json:"class"`
	Since         string `json:"since"`
	Attempts      int    `json:"attempts"`
	WindowMinutes int    `json:"window_minutes"`
}
