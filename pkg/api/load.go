package api

import (
	"fmt"

	"github.com/skein-dts/skein/pkg/spec"
)

// Chunk is one unit of copy work: a block range of one table.
type Chunk struct {
	ID    string        `json:"id"` // stable: "<schema>.<table>#<n>"
	Table spec.TableMap `json:"table"`
	// FirstBlock and EndBlock bound the ctid range [FirstBlock, EndBlock). EndBlock 0 means
	// unbounded; FirstBlock 0 and EndBlock 0 is the whole table.
	FirstBlock int64 `json:"first_block,omitempty"`
	EndBlock   int64 `json:"end_block,omitempty"`
	// RowsEstimate is the chunk's share of the table's estimated rows.
	RowsEstimate int64 `json:"rows_estimate"`
	// Generation is the table's load generation the chunk belongs to: the times its load started
	// over (Reset). A chunk of an older generation does not commit.
	Generation int `json:"generation,omitempty"`
}

// Result is what one chunk copied.
type Result struct {
	Rows    int64 `json:"rows"`
	Bytes   int64 `json:"bytes"`
	Skipped bool  `json:"skipped"` // committed by an earlier attempt
}

// SlotSnapshot is what creating the slot returns: the exported snapshot, valid while the
// replication connection that created it stays open and idle, and the slot's consistent point.
type SlotSnapshot struct {
	SnapshotName    string `json:"snapshot_name"`
	ConsistentPoint string `json:"consistent_point"`
}

// LSN is a position in the source's WAL (pglogrepl.LSN's value, and its JSON: a number).
type LSN uint64

// String writes the LSN as PostgreSQL does: 16/B374D848.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// SlotState describes a replication slot on the source.
type SlotState struct {
	Exists         bool
	Active         bool
	ConfirmedFlush LSN
	CurrentWAL     LSN
	// Capture: the task's schema-change capture triggers exist (filled by the SlotState
	// activity).
	Capture bool `json:",omitempty"`
}
