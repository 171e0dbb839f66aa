package api

import (
	"time"

	"github.com/skein-dts/skein/pkg/spec"
)

// Alert kinds.
const (
	AlertLatency = "latency" // apply lag went above alerts.latency_seconds
	AlertFailed  = "failed"  // the task failed (retry window over, or a fatal error)
	AlertVerify  = "verify"  // a scheduled verification found differences it did not repair
)

// AlertEvent is what an alert reports; it is also the JSON body POSTed to alerts.webhook_url.
type AlertEvent struct {
	Task       string  `json:"task"`
	Kind       string  `json:"kind"`
	Phase      string  `json:"phase"`
	Message    string  `json:"message"`
	LagSeconds float64 `json:"lag_seconds"`
	LagBytes   int64   `json:"lag_bytes"`
	Time       string  `json:"time,omitempty"` // set when sent
}

// AlertInput asks for one alert.
type AlertInput struct {
	Event      AlertEvent `json:"event"`
	WebhookURL string     `json:"webhook_url,omitempty"`
	// WebhookURLSecret names the secret holding the URL (read here, on the worker).
	WebhookURLSecret string `json:"webhook_url_secret,omitempty"`
}

// SignalApplyProgress is the internal signal by which the apply activity reports its position to
// the task's workflow, for the status query.
const SignalApplyProgress = "skein-apply-progress"

// ApplyInput asks for a run of change apply.
type ApplyInput struct {
	Spec   spec.Spec       `json:"spec"`
	Tables []spec.TableMap `json:"tables"`
	// MaxRun ends the run cleanly after this long (the workflow starts the next one), which keeps
	// each activity bounded; 0 = 30 minutes.
	MaxRun time.Duration `json:"max_run,omitempty"`
	// ReportEvery is the interval of routine progress signals (position, lag, counts); 0 = a
	// minute. What a person looks for in the history (a schema change, the lag crossing the alert
	// threshold, the run applying again after a failure) is signalled at once; the live figures
	// are in the activity's heartbeat, every second.
	ReportEvery time.Duration `json:"report_every,omitempty"`
	// StallAfter is how long a destination statement may wait for the server before the apply
	// asks the server (on a new connection) whether it still works on it; 0 = a minute.
	StallAfter time.Duration `json:"stall_after,omitempty"`
	// SkipBefore lists source tables whose changes in transactions committed before an LSN were
	// applied by the stream that loaded them (modify-objects).
	SkipBefore []SkipBefore `json:"skip_before,omitempty"`
	// StopAt ends the run once everything before this LSN is applied; CatchUp stops at the
	// source's position when the run starts. Both serve the helper stream of added tables.
	StopAt  string `json:"stop_at,omitempty"`
	CatchUp bool   `json:"catch_up,omitempty"`
	// Repair, when set, is the id of a repair (RepairRequest): the run takes a snapshot of the
	// source with a temporary slot, applies every change committed before the snapshot's
	// position and none after it, repairs the recorded differences with the snapshot's rows in
	// one destination transaction, and ends (ApplyProgress.Repair).
	Repair string `json:"repair,omitempty"`
	// Helper marks the helper stream: it reports no progress to the workflow.
	Helper bool `json:"helper,omitempty"`
	// FailedAttempts counts the runs of this streak that failed before this one (the workflow
	// starts each run as a single attempt and retries in its own loop): after a failure, the first
	// changes go statement by statement.
	FailedAttempts int `json:"failed_attempts,omitempty"`
}

// Retried is an activity input that wants to know how many runs of its failure streak failed
// before it: the workflow's retry loop gives it the count.
type Retried interface {
	WithFailedAttempts(n int) any
}

// WithFailedAttempts is in for a run after n failed ones (api.Retried).
func (in ApplyInput) WithFailedAttempts(n int) any {
	in.FailedAttempts = n
	return in
}

// SkipBefore is one table of ApplyInput.SkipBefore.
type SkipBefore struct {
	Table spec.QName `json:"table"`
	LSN   string     `json:"lsn"`
}

// TablePlan is the load plan of one table.
type TablePlan struct {
	Table        spec.TableMap `json:"table"`
	RowsEstimate int64         `json:"rows_estimate"`
	Chunks       []Chunk       `json:"chunks"`
	// Bytes is the table's size on disk without TOAST (an estimate of the copy's size).
	Bytes int64 `json:"bytes,omitempty"`
	// Unlogged: the table writes no WAL, so it is loaded but cannot stream its changes.
	Unlogged bool `json:"unlogged,omitempty"`
	// Partitioned: a partitioned table or a partition, whose keys and indexes are built after the
	// load (a parent's index covers its partitions).
	Partitioned bool `json:"partitioned,omitempty"`
	// References are the tables the table's foreign keys reference (itself included), by source
	// name: its foreign keys are added once they all have their keys.
	References []spec.QName `json:"references,omitempty"`
}

// ErrSnapshotLost is the ApplicationError type of a chunk that could not import the task's
// snapshot because its holder ended: the workflow reloads the unfinished tables in a new one.
const ErrSnapshotLost = "snapshot_lost"

// CopyTask is what a chunk copy needs of the task: not its spec, which the workflow's start event
// holds already, while a load records a copy input per chunk (thousands of them).
type CopyTask struct {
	Name        string        `json:"name"`
	Source      spec.Endpoint `json:"source"`
	Destination spec.Endpoint `json:"destination"`
	// Throttle is throttle.full; Parallelism full_load.parallelism, the chunks that share it
	// unless Share says otherwise.
	Throttle    spec.ThrottleFull `json:"throttle"`
	Parallelism int               `json:"parallelism"`
	// KeepExisting: conflict_mode ignore (a row already on the destination stays).
	KeepExisting bool `json:"keep_existing,omitempty"`
	// ShowRowValues is show_row_values: errors keep the row values servers report.
	ShowRowValues bool `json:"show_row_values,omitempty"`
}

// ShowsRowValues tells the worker's interceptor whether the copy's errors may show row values.
func (t CopyTask) ShowsRowValues() bool { return t.ShowRowValues }

// CopyTaskOf is the part of s a chunk copy needs.
func CopyTaskOf(s spec.Spec) CopyTask {
	return CopyTask{Name: s.Name, Source: s.Source, Destination: s.Destination, Throttle: s.Throttle.Full,
		Parallelism: s.FullLoad.Parallelism, KeepExisting: s.ConflictMode == spec.ConflictIgnore, ShowRowValues: s.ShowRowValues}
}

// CopyChunkInput asks for one chunk.
type CopyChunkInput struct {
	Task     CopyTask `json:"task"`
	Chunk    Chunk    `json:"chunk"`
	Snapshot string   `json:"snapshot"`
	// Share is the number of chunks that may run at once, which share the task's throttle
	// limits; 0 = CopyTask.Parallelism.
	Share int `json:"share,omitempty"`
}

// CopyChunksInput asks for a batch of chunks (of small tables), copied one after the other.
type CopyChunksInput struct {
	Task     CopyTask `json:"task"`
	Chunks   []Chunk  `json:"chunks"`
	Snapshot string   `json:"snapshot"`
	Share    int      `json:"share,omitempty"` // as in CopyChunkInput
}

// CopyAndBuildInput asks for a batch of chunks and then for the keys and indexes of the tables
// of the chunks Build lists (indexes into Chunks; each such chunk is its table's only one).
// Objects is the selection, which maps the tables foreign keys reference to their destination
// names; it is set when Build is.
type CopyAndBuildInput struct {
	CopyChunksInput
	Build   []int         `json:"build,omitempty"`
	Objects []spec.Object `json:"objects,omitempty"`
}

// CopiedAndBuilt is what CopyChunksAndBuild did.
type CopiedAndBuilt struct {
	Results []Result     `json:"results"`
	Schema  SchemaReport `json:"schema"`
}

// SchemaInput asks for a schema stage.
type SchemaInput struct {
	Spec     spec.Spec       `json:"spec"`
	Tables   []spec.TableMap `json:"tables"`
	Snapshot string          `json:"snapshot,omitempty"`
	// Built names (by source name) the tables whose keys and indexes BuildTables added during the
	// load (the post-data step adds only their foreign keys), Linked those whose foreign keys it
	// added too (the post-data step leaves them out).
	Built  []spec.QName `json:"built,omitempty"`
	Linked []spec.QName `json:"linked,omitempty"`
}

// BuildInput asks for the keys and indexes of tables whose load is complete, and for the foreign
// keys of tables whose referenced tables have their keys.
type BuildInput struct {
	Spec   spec.Spec       `json:"spec"`
	Tables []spec.TableMap `json:"tables,omitempty"`
	// ForeignKeysOf are the tables whose foreign keys to add; Referenced maps the tables they
	// reference.
	ForeignKeysOf []spec.TableMap `json:"foreign_keys_of,omitempty"`
	Referenced    []spec.TableMap `json:"referenced,omitempty"`
}

// SequencesInput asks to set the destination sequences from the source.
type SequencesInput struct {
	Spec   spec.Spec       `json:"spec"`
	Tables []spec.TableMap `json:"tables"`
	Offset int64           `json:"offset"`
}

// SnapshotInput asks for the task's snapshot.
type SnapshotInput struct {
	Spec spec.Spec `json:"spec"`
	// WithSlot creates the replication slot and exports its snapshot (incremental tasks);
	// otherwise a plain exported snapshot is held (full-only tasks).
	WithSlot bool `json:"with_slot"`
	// Temporary (with WithSlot) creates a temporary slot, gone when the holder ends: it serves
	// only its snapshot and consistent point (a reload after the first snapshot was lost).
	Temporary bool `json:"temporary,omitempty"`
}

// ResetLoadInput names tables whose load starts over.
type ResetLoadInput struct {
	Spec   spec.Spec       `json:"spec"`
	Tables []spec.TableMap `json:"tables"`
	// Generations are the tables' new load generations (fullload.Reset).
	Generations []int `json:"generations,omitempty"`
}

// TaskInfo is what a verification needs to know of its task.
type TaskInfo struct {
	Spec    spec.Spec `json:"spec"`
	Running bool      `json:"running"`
	// Phase is the running task's phase; "" for a closed task.
	Phase string `json:"phase"`
	// Tables is the running task's table list, which follows schema changes on the source; nil
	// for a closed task (its spec resolves them).
	Tables []spec.TableMap `json:"tables,omitempty"`
}

// VerifyTaskInput asks for an on-demand verification of a task's tables.
type VerifyTaskInput struct {
	Spec   spec.Spec       `json:"spec"`
	Tables []spec.TableMap `json:"tables"`
	// Streaming is set while the task applies changes: differences are re-checked once the apply
	// has passed them (the task's slot shows how far it got).
	Streaming bool `json:"streaming"`
	// RepairID, when set, records the differences found on the destination for that repair.
	RepairID string `json:"repair_id,omitempty"`
	// Rotate and Round take the sampled chunks by turn (VerifyRequest.Round).
	Rotate bool `json:"rotate,omitempty"`
	Round  int  `json:"round,omitempty"`
}

// RepairInput asks for the repair of a task that does not stream (it ended, or has no
// incremental sync): the source is read as it is now.
type RepairInput struct {
	Spec     spec.Spec       `json:"spec"`
	Tables   []spec.TableMap `json:"tables"`
	RepairID string          `json:"repair_id"`
}
