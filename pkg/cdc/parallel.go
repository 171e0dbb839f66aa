package cdc

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/spec"
)

// heldBytes caps the bytes of one source transaction held to be split over the lanes; a larger
// one is a barrier (lanes.go).
const heldBytes = 16 << 20

// parallel routes a stream's source transactions to its lanes (lanes.go describes the whole).
type parallel struct {
	s     *stream
	lanes []*lane
	done  chan laneDone
	stop  context.CancelFunc // ends the lanes' work
	wg    sync.WaitGroup
	// committed is, per lane, the place of the last part it committed; fifo the source
	// transactions given to lanes and not applied by all of them yet, in source order.
	committed []uint64
	fifo      []laneEntry
	seq       uint64
	counts    []Counts // per lane, as last reported
	txs       int64    // source transactions the lanes applied
	// The router's own view: relations as described, the tables, the relations the task let skip.
	rels    map[uint32]*pglogrepl.RelationMessage
	keys    map[uint32]laneKey
	tables  map[spec.QName]spec.TableMap
	skipped map[uint32]bool
	// cur is the source transaction being received; serial: it is a barrier, applied by the
	// stream itself.
	cur    heldTx
	serial bool
	// version and schemaSeen are lane 0's tablesVersion and schema changes when the other lanes
	// last took its tables.
	version    int
	schemaSeen int64
}

// laneEntry is a source transaction given to lanes: mask has a bit per lane it gave a part to;
// changes: some part has changes (not only relation descriptions).
type laneEntry struct {
	seq               uint64
	mask              uint64
	changes           bool
	commitLSN, endLSN pglogrepl.LSN
	commitTime        time.Time
}

// heldTx is a source transaction held until its commit, to be split over the lanes: bytes
// counts the values it holds.
type heldTx struct {
	begin   *pglogrepl.BeginMessage
	items   []heldItem
	changes int
	bytes   int
}

// heldItem is a relation description (lane -1: for every lane) or a row change, copied out of
// the message it came in (hold).
type heldItem struct {
	lane int
	rel  *pglogrepl.RelationMessage
	row  pglogrepl.Message
}

// hold copies a decoded row change, whose values point into the message received (valid only
// while the reader hands it over), into memory of its own, and counts its bytes.
func (h *heldTx) hold(m pglogrepl.Message) pglogrepl.Message {
	switch r := m.(type) {
	case *pglogrepl.InsertMessage:
		c := *r
		c.Tuple = h.tuple(r.Tuple)
		return &c
	case *pglogrepl.UpdateMessage:
		c := *r
		c.OldTuple, c.NewTuple = h.tuple(r.OldTuple), h.tuple(r.NewTuple)
		return &c
	case *pglogrepl.DeleteMessage:
		c := *r
		c.OldTuple = h.tuple(r.OldTuple)
		return &c
	}
	return m
}

// tuple copies t, its values into one allocation.
func (h *heldTx) tuple(t *pglogrepl.TupleData) *pglogrepl.TupleData {
	if t == nil {
		return nil
	}
	size := 0
	for _, c := range t.Columns {
		size += len(c.Data)
	}
	data := make([]byte, 0, size)
	cols := make([]pglogrepl.TupleDataColumn, len(t.Columns))
	ptrs := make([]*pglogrepl.TupleDataColumn, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = *c
		if c.Data != nil {
			from := len(data)
			data = append(data, c.Data...)
			cols[i].Data = data[from:len(data):len(data)]
		}
		ptrs[i] = &cols[i]
	}
	h.bytes += size
	return &pglogrepl.TupleData{ColumnNum: t.ColumnNum, Columns: ptrs}
}

// startLanes opens lanes-1 more destination sessions and starts the lanes; lane 0 uses the
// stream's own session and applier.
func startLanes(ctx context.Context, s *stream, lanes int) (*parallel, error) {
	p := &parallel{s: s, done: make(chan laneDone, 4*lanes), committed: make([]uint64, lanes), counts: make([]Counts, lanes),
		rels: map[uint32]*pglogrepl.RelationMessage{}, keys: map[uint32]laneKey{}, tables: maps.Clone(s.app.tables), skipped: map[uint32]bool{}, version: s.app.tablesVersion,
		schemaSeen: s.app.counts.SchemaChanges + s.app.counts.SchemaChangesSkipped}
	for i := range lanes {
		l := &lane{n: i, task: bookkeeping.LaneTask(s.opts.Task, i, lanes), in: make(chan *lanePart, 64)}
		if i == 0 {
			l.conn, l.app = s.dest, s.app
		} else {
			conn, err := s.opts.OpenLane(ctx)
			if err != nil {
				p.close()
				return nil, fmt.Errorf("open apply lane %d: %w", i, err)
			}
			l.conn = conn
			p.lanes = append(p.lanes, l)
			if err := prepareApplySession(ctx, conn); err != nil {
				p.close()
				return nil, err
			}
			l.app = p.follower(conn, nil)
			continue
		}
		p.lanes = append(p.lanes, l)
	}
	p.run()
	return p, nil
}

// follower is an applier for a lane other than 0, with lane 0's tables and relations; it goes on
// from prev, the lane's applier until then, if any.
func (p *parallel) follower(conn *pgx.Conn, prev *applier) *applier {
	lead := p.lanes[0].app
	a := newApplier(conn, nil, lead.log)
	a.tables = maps.Clone(lead.tables)
	a.relations = maps.Clone(lead.relations)
	a.upsert, a.unknown, a.skipBefore, a.replay = lead.upsert, lead.unknown, lead.skipBefore, lead.replay
	if prev != nil {
		a.counts, a.stmts, a.prepares = prev.counts, prev.stmts, prev.prepares
	}
	return a
}

func (p *parallel) run() {
	ctx, stop := context.WithCancel(context.WithoutCancel(p.s.ctx))
	p.stop = stop
	limits := laneLimits{changes: p.s.opts.BatchChanges, window: p.s.opts.BatchWindow, timeline: p.s.timeline}
	for _, l := range p.lanes {
		l.closed = false
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.run(ctx, limits, p.done)
		}()
	}
}

// close stops the lanes, their work not committed is rolled back, and closes the sessions the
// lanes opened.
func (p *parallel) close() {
	if p.stop != nil {
		p.stop()
	}
	p.wg.Wait()
	for _, l := range p.lanes[min(1, len(p.lanes)):] {
		_ = l.conn.Close(context.Background())
	}
}

// idle reports whether nothing given to the lanes waits to be applied.
func (p *parallel) idle() bool { return len(p.fifo) == 0 && p.cur.begin == nil }

// collect takes the lanes' reports, waiting for one when wait is set, and moves the stream's
// position past the source transactions every lane has applied. It reports whether it moved.
func (p *parallel) collect(ctx context.Context, wait bool) (bool, error) {
	moved := false
	for {
		var d laneDone
		if wait {
			select {
			case d = <-p.done:
			case <-ctx.Done():
				return moved, ctx.Err()
			}
			wait = false
		} else {
			select {
			case d = <-p.done:
			default:
				return moved, nil
			}
		}
		m, err := p.handle(d)
		if err != nil {
			return moved, err
		}
		moved = moved || m
	}
}

// handle takes one lane's report.
func (p *parallel) handle(d laneDone) (moved bool, err error) {
	if d.err != nil {
		return false, d.err
	}
	p.committed[d.lane], p.counts[d.lane] = max(p.committed[d.lane], d.seq), d.counts
	p.s.gate.committed(d.walCommitted, d.walFlushed)
	for len(p.fifo) > 0 && p.applied(p.fifo[0]) {
		e := p.fifo[0]
		p.fifo = p.fifo[1:]
		p.s.reach(e.endLSN)
		p.s.prog.LastCommitTime = e.commitTime
		if e.changes {
			p.s.prog.AppliedLSN = e.commitLSN
			p.s.prog.LastApplyTime = time.Now()
			p.txs++
		}
		moved = true
	}
	p.s.prog.Counts = p.sum()
	return moved, nil
}

// applied reports whether every lane e has a part in has committed it.
func (p *parallel) applied(e laneEntry) bool {
	for i := range p.lanes {
		if e.mask&(1<<i) != 0 && p.committed[i] < e.seq {
			return false
		}
	}
	return true
}

// sum is the counts of all lanes with the transactions they applied.
func (p *parallel) sum() Counts {
	var c Counts
	for _, n := range p.counts {
		c.Transactions += n.Transactions
		c.Inserts += n.Inserts
		c.Updates += n.Updates
		c.Deletes += n.Deletes
		c.Truncates += n.Truncates
		c.Missing += n.Missing
		c.Streamed += n.Streamed
		c.SchemaChanges += n.SchemaChanges
		c.SchemaChangesSkipped += n.SchemaChangesSkipped
	}
	c.Transactions += p.txs
	return c
}

// drain waits until every lane has committed everything given to it.
func (p *parallel) drain(ctx context.Context) error {
	for len(p.fifo) > 0 {
		moved, err := p.collect(ctx, true)
		if err != nil {
			return err
		}
		if moved && p.s.ctx.Err() == nil { // the source is told at the end otherwise
			if err := p.s.progressed(); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish ends the lanes once they have applied everything given to them, and records where
// they meet as the task's position.
func (p *parallel) finish(ctx context.Context) error {
	if err := p.drain(ctx); err != nil {
		return err
	}
	for _, l := range p.lanes {
		if !l.closed {
			close(l.in)
			l.closed = true
		}
	}
	p.wg.Wait()
	if p.s.prog.AppliedLSN == 0 {
		return nil
	}
	return bookkeeping.MeetLanes(ctx, p.s.dest, p.s.opts.Task, p.s.prog.AppliedLSN, p.s.timeline)
}

// begin starts holding a source transaction; barrier: it is applied by the stream itself.
func (p *parallel) begin(m *pglogrepl.BeginMessage, barrier bool) error {
	p.cur = heldTx{begin: m, items: p.cur.items[:0]}
	if barrier {
		return p.toSerial()
	}
	return nil
}

// relation takes a relation description into the transaction held.
func (p *parallel) relation(m *pglogrepl.RelationMessage) error {
	s := p.s
	p.rels[m.RelationID] = m
	p.keys[m.RelationID] = newLaneKey(m)
	delete(p.skipped, m.RelationID)
	if p.cur.begin == nil {
		// pgoutput describes relations inside transactions, once per session: should one come
		// outside a transaction held, or inside one applied before (not held: its rows are
		// dropped), every lane takes it before what follows, or the next transaction's rows
		// would find no description.
		p.seq++
		p.fifo = append(p.fifo, laneEntry{seq: p.seq, mask: 1<<len(p.lanes) - 1, commitTime: s.prog.LastCommitTime})
		for _, l := range p.lanes {
			if err := p.send(l, &lanePart{seq: p.seq, items: []laneItem{{rel: m}}}); err != nil {
				return err
			}
		}
		return nil
	}
	p.cur.items = append(p.cur.items, heldItem{lane: -1, rel: m})
	return nil
}

// route places a row change in the lane of its row.
func (p *parallel) route(m pglogrepl.Message) error {
	s := p.s
	if p.cur.begin == nil {
		return fmt.Errorf("pgoutput %T outside a transaction", m)
	}
	var relID uint32
	var key *pglogrepl.TupleData
	keyChanges := false
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		relID, key = m.RelationID, m.Tuple
	case *pglogrepl.UpdateMessage:
		relID, key = m.RelationID, m.NewTuple
		keyChanges = m.OldTuple != nil && m.OldTupleType == 'K'
	case *pglogrepl.DeleteMessage:
		relID, key = m.RelationID, m.OldTuple
	}
	rel := p.rels[relID]
	if rel == nil {
		return p.barrierRow(m) // lane 0's applier names the error
	}
	if _, known := p.tables[spec.QName{Schema: rel.Namespace, Name: rel.RelationName}]; !known {
		if p.skipped[rel.RelationID] {
			return nil
		}
		return p.barrierRow(m) // the task decides about the relation (StreamOptions.Unknown)
	}
	if keyChanges {
		return p.barrierRow(m) // the row's key changes: it moves to another lane
	}
	lane, ok := p.keys[rel.RelationID].lane(key, len(p.lanes))
	if !ok {
		return p.barrierRow(m)
	}
	if err := s.opts.Throttle.Wait(s.ctx, 1, 0); err != nil {
		return err
	}
	p.cur.items = append(p.cur.items, heldItem{lane: lane, row: p.cur.hold(m)})
	p.cur.changes++
	if p.cur.changes >= s.opts.BatchChanges || p.cur.bytes >= heldBytes {
		return p.toSerial() // too large to hold: applied as it arrives
	}
	return nil
}

// give splits the committed source transaction over the lanes.
func (p *parallel) give(m *pglogrepl.CommitMessage) error {
	s := p.s
	cur := p.cur
	p.cur.begin = nil
	e := laneEntry{commitLSN: m.CommitLSN, endLSN: m.TransactionEndLSN, commitTime: m.CommitTime}
	parts := make([]*lanePart, len(p.lanes))
	part := func(lane int) *lanePart {
		if parts[lane] == nil {
			parts[lane] = &lanePart{commitLSN: m.CommitLSN}
		}
		return parts[lane]
	}
	p.cur.items = cur.items[:0]
	for _, it := range cur.items {
		if it.rel != nil {
			for i := range p.lanes {
				part(i).items = append(part(i).items, laneItem{rel: it.rel})
			}
			continue
		}
		lp := part(it.lane)
		lp.items = append(lp.items, laneItem{row: it.row})
		lp.changes++
		e.changes = true
	}
	for i, lp := range parts {
		if lp != nil {
			e.mask |= 1 << i // a lane given only descriptions reports them too (see drain)
		}
	}
	if e.mask != 0 {
		p.seq++
		e.seq = p.seq
	}
	if e.mask == 0 && len(p.fifo) == 0 {
		// Nothing of the selection changed, and every lane is done: as the serial apply does.
		s.reach(m.TransactionEndLSN)
		if m.CommitTime.After(s.prog.LastCommitTime) {
			s.prog.LastCommitTime = m.CommitTime
		}
	} else {
		p.fifo = append(p.fifo, e)
	}
	for i, lp := range parts {
		if lp == nil {
			continue
		}
		lp.seq = e.seq
		if err := p.send(p.lanes[i], lp); err != nil {
			return err
		}
	}
	return nil
}

// send gives a part to a lane, taking the lanes' reports while its queue is full.
func (p *parallel) send(l *lane, part *lanePart) error {
	for {
		select {
		case l.in <- part:
			return nil
		case d := <-p.done:
			if _, err := p.handle(d); err != nil {
				return err
			}
		case <-p.s.ctx.Done():
			return p.s.ctx.Err()
		}
	}
}

// barrierRow makes the current source transaction a barrier and applies m in it.
func (p *parallel) barrierRow(m pglogrepl.Message) error {
	if err := p.toSerial(); err != nil {
		return err
	}
	return p.s.change(func() error { return p.s.app.row(p.s.ctx, m) })
}

// toSerial turns the current source transaction into a barrier: once every lane has committed
// everything before it, the stream applies what of it was held and then the rest as it arrives,
// on lane 0's session, and commits it on its own (endSerial).
func (p *parallel) toSerial() error {
	if err := p.drain(p.s.ctx); err != nil {
		return err
	}
	s := p.s
	p.serial = true
	cur := p.cur
	p.cur = heldTx{items: cur.items[:0]}
	s.app.txLSN = cur.begin.FinalLSN
	for _, it := range cur.items {
		var err error
		if it.rel != nil {
			err = s.app.describe(s.ctx, it.rel)
		} else {
			err = s.apply(func() error { return s.app.row(s.ctx, it.row) }) // paced when held
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// endSerial commits a barrier at its source commit and lets the other lanes know what it
// changed: relation descriptions, and after a schema change the tables (they start afresh).
func (p *parallel) endSerial() error {
	s := p.s
	p.serial = false
	if s.txOpen {
		if err := s.commit(s.ctx); err != nil {
			return err
		}
	}
	lead := p.lanes[0].app
	for id, rel := range lead.relations {
		if p.rels[id] != rel {
			p.rels[id], p.keys[id] = rel, newLaneKey(rel)
		}
	}
	p.skipped = maps.Clone(lead.skipped)
	p.counts[0] = lead.counts
	schemaChanged := lead.counts.SchemaChanges+lead.counts.SchemaChangesSkipped != p.schemaSeen || lead.tablesVersion != p.version
	p.schemaSeen, p.version = lead.counts.SchemaChanges+lead.counts.SchemaChangesSkipped, lead.tablesVersion
	if schemaChanged {
		p.tables = maps.Clone(lead.tables)
	}
	for _, l := range p.lanes[1:] {
		if schemaChanged {
			// What the lane derived from the tables may be out of date: it starts afresh, as
			// lane 0's applier after the change, keeping only its prepared statements (by SQL
			// text, as lane 0 does).
			l.app = p.follower(l.conn, l.app)
			continue
		}
		for id, rel := range lead.relations {
			if l.app.relations[id] != rel {
				if err := l.app.describe(s.ctx, rel); err != nil {
					return fmt.Errorf("apply lane %d: %w", l.n, err)
				}
			}
		}
	}
	s.prog.Counts = p.sum()
	s.opts.Log.Debug("barrier applied", zap.Stringer("lsn", s.prog.AppliedLSN))
	return nil
}
