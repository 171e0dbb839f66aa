package cdc

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/bookkeeping"
)

// Parallel apply (StreamOptions.Lanes > 1) spreads the changes of each source transaction over
// lanes, each with its own destination session, applier and progress row:
//   - A table whose replica identity is a key (its primary key or an index) is spread by the key:
//     every change of a row goes to the same lane, in source order. Other tables go whole to one
//     lane, by their name.
//   - A lane groups the parts it is given into destination transactions and records, in the same
//     transaction, the last source transaction it applied a part of (bookkeeping.LaneTask).
//   - The source is told a position only once every lane has applied everything before it.
//   - What cannot be split is a barrier, applied by the stream itself on lane 0's session once
//     every lane has committed everything before it, and committed at once with the task's own
//     progress row: a TRUNCATE, a schema change, a change of a relation the task does not know,
//     an update that changes a row's key, a transaction too large to hold (or streamed before its
//     commit). After a schema change the other lanes start afresh with lane 0's table list.
//
// Between barriers the destination may show one lane's part of a source transaction before
// another's (foreign keys are not checked in the apply's sessions: session_replication_role is
// replica); where the lanes meet (a barrier, the end of a run, StopAt) it is the source's state.
//
// Exactly once: a lane's row says that its part of every source transaction committed at or
// before it is applied. On restart the stream resumes from the task's own row (where the lanes
// last met, or less) and every change is skipped that a lane row of its own lane (under the lane
// count that row was written with) covers: replayWindow. The lane of a change is a fixed function
// of the table's name, its key and the lane count, so a restart with another lane count is exact.

// laneKey is what places a relation's changes in lanes: the hash of its name and, for a
// relation whose replica identity is a key, the key columns.
type laneKey struct {
	hash uint32
	keys []int
}

// newLaneKey is rel's laneKey. The hash is recorded in the meaning of progress rows: never change
// it.
func newLaneKey(rel *pglogrepl.RelationMessage) laneKey {
	k := laneKey{hash: fnvMore(fnvMore(fnvMore(2166136261, []byte(rel.Namespace)), []byte{0}), []byte(rel.RelationName))}
	if rel.ReplicaIdentity == 'd' || rel.ReplicaIdentity == 'i' {
		for i, c := range rel.Columns {
			if c.Flags&1 == 1 {
				k.keys = append(k.keys, i)
			}
		}
	}
	return k
}

// lane returns the lane of a change whose key values are in t (the new tuple of an insert or of
// an update that keeps its key, the old key of a delete), of lanes lanes. A relation whose
// replica identity is a key (default: the primary key, or an index) is spread by it; others go
// whole to one lane. ok is false where the key cannot be read from t (a value left out as
// unchanged TOAST): such a change is a barrier.
func (k laneKey) lane(t *pglogrepl.TupleData, lanes int) (lane int, ok bool) {
	h := k.hash
	var buf [4]byte
	for _, i := range k.keys {
		if t == nil || i >= len(t.Columns) || t.Columns[i].DataType != pglogrepl.TupleDataTypeText {
			return 0, false
		}
		v := t.Columns[i].Data
		binary.BigEndian.PutUint32(buf[:], uint32(len(v)))
		h = fnvMore(fnvMore(h, buf[:]), v)
	}
	return int(h % uint32(lanes)), true
}

// fnvMore continues an FNV-1a hash over b.
func fnvMore(h uint32, b []byte) uint32 {
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// replayWindow holds the lane rows of an earlier run that are ahead of the task's position: the
// changes they cover are applied already and are skipped.
type replayWindow struct {
	rows []bookkeeping.LaneRow
	end  pglogrepl.LSN // the highest row
}

func newReplayWindow(rows []bookkeeping.LaneRow) *replayWindow {
	if len(rows) == 0 {
		return nil
	}
	w := &replayWindow{rows: rows}
	for _, r := range rows {
		w.end = max(w.end, r.LSN)
	}
	return w
}

// applied reports whether the change of rel with key values in t, of the source transaction
// committed at txLSN, was applied by a lane of the earlier run.
func (w *replayWindow) applied(rel *pglogrepl.RelationMessage, t *pglogrepl.TupleData, txLSN pglogrepl.LSN) bool {
	if w == nil || txLSN > w.end {
		return false
	}
	for _, r := range w.rows {
		if txLSN > r.LSN {
			continue
		}
		if lane, ok := newLaneKey(rel).lane(t, r.Lanes); ok && lane == r.Lane {
			return true
		}
	}
	return false
}

// lanePart is one lane's part of a source transaction: the relation descriptions and changes of
// it that go to the lane, in source order.
type lanePart struct {
	seq       uint64 // the source transaction's place among those given to lanes
	commitLSN pglogrepl.LSN
	items     []laneItem
	changes   int
}

// laneItem is a relation description or a row change.
type laneItem struct {
	rel *pglogrepl.RelationMessage
	row pglogrepl.Message
}

// laneDone is what a lane reports after a commit: every part through seq is applied; counts are
// its applier's. A lane that fails reports its error and stops.
type laneDone struct {
	lane   int
	seq    uint64
	counts Counts
	err    error
	// walCommitted and walFlushed are the lane applier's (durable.go), as of the report.
	walCommitted, walFlushed pglogrepl.LSN
}

// lane is one destination session of a parallel apply.
type lane struct {
	n      int
	task   string // its progress row's key
	conn   *pgx.Conn
	app    *applier
	in     chan *lanePart
	closed bool // in is closed
}

// laneLimits bound a lane's destination transactions.
type laneLimits struct {
	changes  int
	window   time.Duration
	timeline int32
}

// run applies the parts given to the lane until in is closed or ctx ends. Parts that wait in in
// are grouped into one destination transaction (up to limits), which commits as soon as none
// waits: a backlog is grouped, a trickle applied at once.
func (l *lane) run(ctx context.Context, limits laneLimits, done chan<- laneDone) {
	// last is the last part taken into the open destination transaction: its seq is reported at
	// the commit, its commitLSN (of the last part with changes) recorded.
	var last *lanePart
	var changes int
	var started time.Time
	report := func(d laneDone) {
		select {
		case done <- d:
		case <-ctx.Done():
		}
	}
	fail := func(err error) {
		l.app.discard()
		report(laneDone{lane: l.n, err: fmt.Errorf("apply lane %d: %w", l.n, err)})
	}
	for {
		var p *lanePart
		var ok bool
		if last != nil && changes < limits.changes && time.Since(started) < limits.window {
			select {
			case p, ok = <-l.in:
			default:
			}
		}
		if p == nil && last != nil {
			through := last.commitLSN.String()
			err := l.app.commit(ctx, bookkeeping.AppliedSQL, bookkeeping.AppliedParams(l.task, last.commitLSN, limits.timeline), through)
			if err != nil {
				fail(err)
				return
			}
			report(laneDone{lane: l.n, seq: last.seq, counts: l.app.counts, walCommitted: l.app.walCommitted, walFlushed: l.app.walFlushed})
			last, changes = nil, 0
			continue
		}
		if p == nil {
			select {
			case p, ok = <-l.in:
			case <-ctx.Done():
				return
			}
		}
		if !ok {
			return
		}
		if p.changes > 0 && last == nil {
			if err := l.app.begin(ctx); err != nil {
				fail(err)
				return
			}
			started = time.Now()
		}
		if err := l.apply(ctx, p); err != nil {
			fail(err)
			return
		}
		switch {
		case p.changes > 0:
			last = p
			changes += p.changes
		case last != nil:
			last = &lanePart{seq: p.seq, commitLSN: last.commitLSN} // reported with the commit
		default:
			report(laneDone{lane: l.n, seq: p.seq, counts: l.app.counts}) // descriptions only: taken
		}
	}
}

// apply hands a part's items to the lane's applier.
func (l *lane) apply(ctx context.Context, p *lanePart) error {
	l.app.txLSN = p.commitLSN
	for _, it := range p.items {
		var err error
		if it.rel != nil {
			err = l.app.describe(ctx, it.rel)
		} else {
			err = l.app.row(ctx, it.row)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
