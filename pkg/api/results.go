package api

import (
	"slices"

	"github.com/skein-dts/skein/pkg/spec"
)

// Counts are the changes applied.
type Counts struct {
	Transactions int64 `json:"transactions"`
	Inserts      int64 `json:"inserts"`
	Updates      int64 `json:"updates"`
	Deletes      int64 `json:"deletes"`
	Truncates    int64 `json:"truncates"`
	// Missing counts updates and deletes that found no row on the destination.
	Missing int64 `json:"missing"`
	// Streamed counts transactions the source sent in parts before their commit (large ones),
	// kept on the worker's disk and applied at their commit.
	Streamed int64 `json:"streamed,omitempty"`
	// SchemaChanges counts the source's schema changes applied to the destination;
	// SchemaChangesSkipped those of tables whose operations leave out ddl.
	SchemaChanges        int64 `json:"schema_changes,omitempty"`
	SchemaChangesSkipped int64 `json:"schema_changes_skipped,omitempty"`
}

// Levels of a precheck Item: a failed Error stops the task, a failed Warning unless the spec
// ignores it (ignore_precheck), an Info never.
const Error, Warning, Info = "error", "warning", "info"

// Item is one precheck result.
type Item struct {
	ID     string `json:"id"`
	Level  string `json:"level"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Blocking reports whether the item stops the task: a failed error, or a failed warning the spec
// does not ignore.
func (it Item) Blocking(ignore []string) bool {
	if it.Passed {
		return false
	}
	switch it.Level {
	case Error:
		return true
	case Warning:
		return !slices.Contains(ignore, it.ID)
	}
	return false
}

// Diff is one row that differs.
type Diff struct {
	Kind string `json:"kind"`
	// Key names the row: "id=42" for a table with a key, "row md5 <md5 of the row's text>" for a
	// table without one (its values never leave the databases).
	Key string `json:"key"`
}

// TableResult is the comparison of one table.
type TableResult struct {
	Source        string `json:"source"`
	Destination   string `json:"destination"`
	Mode          string `json:"mode,omitempty"`
	SourceRows    int64  `json:"source_rows"`
	DestRows      int64  `json:"dest_rows"`
	Chunks        int    `json:"chunks,omitempty"`
	ChunksChecked int    `json:"chunks_checked,omitempty"`
	Missing       int64  `json:"missing,omitempty"`
	Extra         int64  `json:"extra,omitempty"`
	Different     int64  `json:"different,omitempty"`
	Changing      int64  `json:"changing,omitempty"`
	// Diffs lists differing rows, at most Options.MaxDiffs of them; the counts above are the totals.
	Diffs []Diff `json:"diffs,omitempty"`
	Equal bool   `json:"equal"`
	// Note explains a comparison that could not be narrowed down to rows.
	Note string `json:"note,omitempty"`
	// Repair is what a repair did to the table's differences (verify --repair), or why it did not.
	Repair *TableRepair `json:"repair,omitempty"`
}

// TableRepair is the repair of one table.
type TableRepair struct {
	Table string `json:"table"` // the source table
	// Deleted and Inserted count destination rows deleted and source rows written: a row
	// overwritten counts in both.
	Deleted  int64 `json:"deleted"`
	Inserted int64 `json:"inserted"`
	// Pending: the differences are recorded for a repair that has not run (yet).
	Pending bool `json:"pending,omitempty"`
	// Refused says why the table's differences are not repaired.
	Refused string `json:"refused,omitempty"`
}

// SchemaReport says what a schema stage did, for the status and the history.
type SchemaReport struct {
	Created []string `json:"created,omitempty"`
	Skipped []string `json:"skipped,omitempty"`
	Warned  []string `json:"warned,omitempty"`
}

// VerifyProgress is the heartbeat of a verification: chunks compared and planned.
type VerifyProgress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// ApplyProgress is the apply position reported to the workflow.
type ApplyProgress struct {
	AppliedLSN string  `json:"applied_lsn"`
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	Counts     Counts  `json:"counts"`
	// FlushedLSN: everything before it is applied (or not part of the selection).
	FlushedLSN string `json:"flushed_lsn,omitempty"`
	// LastSchemaChange is the last source schema change this run applied (tag and statement).
	LastSchemaChange string `json:"last_schema_change,omitempty"`
	// Tables is the task's table list after schema changes changed it (tables created, renamed
	// or dropped on the source), sent once per change (TablesVersion counts them in the run).
	Tables        []spec.TableMap `json:"tables,omitempty"`
	TablesVersion int             `json:"tables_version,omitempty"`
	// Renamed lists the destination tables this run renamed to follow their source's, in order
	// (sent with Tables).
	Renamed []spec.Rename `json:"renamed,omitempty"`
	// Run names the apply run (activity and attempt) that sent the report: Renamed is that
	// run's list so far.
	Run string `json:"run,omitempty"`
	// NotReplicated counts this run's schema changes of objects Skein does not replicate while
	// streaming (views, functions, types), LastNotReplicated names the last.
	NotReplicated     int    `json:"not_replicated,omitempty"`
	LastNotReplicated string `json:"last_not_replicated,omitempty"`
	// Repair is the outcome of the repair the run was given (ApplyInput.Repair); nil when the run
	// ended before it reached the repair's position (the next run does it).
	Repair *RepairOutcome `json:"repair,omitempty"`
}

// Failed returns the items that stop the task.
func Failed(items []Item, ignore []string) []Item {
	var out []Item
	for _, it := range items {
		if it.Blocking(ignore) {
			out = append(out, it)
		}
	}
	return out
}

// Class is the retry class of an error.
type Class string

// The classes. They are also the Temporal ApplicationError types activities return.
const (
	Connection Class = "connection" // retried for retry.connection_minutes
	Other      Class = "other"      // retried for retry.other_minutes
	Fatal      Class = "fatal"      // never retried
)
