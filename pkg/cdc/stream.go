package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
)

// StreamOptions configure Stream.
type StreamOptions struct {
	Task        string
	Slot        string
	Publication string
	Tables      []spec.TableMap
	// StatusInterval is how often the source is told the flushed position (default 5s).
	StatusInterval time.Duration
	// SilenceLimit is how long the source may leave a status message that asks for a reply
	// unanswered before the stream fails with a connection error (default 2 minutes).
	SilenceLimit time.Duration
	// BatchWindow is how long a destination transaction may stay open to group source
	// transactions that arrive back to back (default 100ms).
	BatchWindow time.Duration
	// BatchIdle commits the destination transaction once nothing arrived for this long after a
	// source commit (default 1ms), where the replication socket cannot be asked whether more has
	// arrived. Where it can (TCP and Unix sockets, with or without TLS), the transaction commits
	// as soon as nothing more waits: a backlog is grouped, a steady trickle is applied at once.
	BatchIdle time.Duration
	// BatchChanges caps the changes grouped into one destination transaction (default 20000).
	BatchChanges int
	// OnProgress is called after every destination commit and every status interval.
	OnProgress func(Progress)
	Log        *zap.Logger
	// Upsert (conflict_mode: ignore) makes inserts overwrite rows with the same key.
	Upsert bool
	// Throttle paces applied changes (rows) and their data (bytes); nil = unlimited.
	Throttle *throttle.Limiter
	// SkipBefore skips a table's changes in source transactions committed before the LSN: another
	// stream (of a table added to a running task) applied them.
	SkipBefore map[spec.QName]pglogrepl.LSN
	// StopAt ends the stream (nil error) once everything before it is applied; 0 = run on.
	StopAt pglogrepl.LSN
	// StopBefore ends the stream (nil error) with every source transaction committed before the
	// LSN applied and none committed at or after it: the destination is then where a snapshot
	// exported at that position (a slot's consistent point) sees the source. 0 = run on.
	StopBefore pglogrepl.LSN
	// RunFor ends the stream (nil error) once it has run this long, at a moment when no source
	// transaction is being received or applied and none is spooled: a run never cuts one, so a
	// transaction that takes longer than a run to arrive and apply is not started over at every
	// run. 0 = until ctx ends.
	RunFor time.Duration
	// SpoolDir holds large in-progress transactions the source streams before their commit
	// (protocol version 2, PostgreSQL 14+); "" = $SKEIN_SPOOL_DIR or the system's temp directory.
	SpoolDir string
	// ExactChanges applies the destination transactions that begin within the first
	// ExactChanges changes statement by statement, not in keyed batches (keyed.go): set after a
	// failed attempt, so that a change the destination rejects is named exactly.
	ExactChanges int
	// SchemaChanges is the message prefix of the task's schema-change events (ddlcapture.Prefix);
	// "" leaves them alone. Objects is the selection, for the tables the source creates.
	SchemaChanges string
	Objects       []spec.Object
	// SchemaChangeTable is where a source older than 14 writes the events
	// (ddlcapture.EventsTable): their rows are taken as the events, in their place in the stream.
	SchemaChangeTable spec.QName
	// Unknown decides about changes of relations that are not in Tables (nil: they stop the
	// apply); see UnknownRelation and CheckUnknownRelation.
	Unknown UnknownRelation
	// Lanes applies with this many destination sessions at once (parallel.go; 0 or 1: one);
	// OpenLane opens each session past the first (dest). After a failed attempt (ExactChanges)
	// the stream applies with one.
	Lanes    int
	OpenLane func(ctx context.Context) (*pgx.Conn, error)
	// DisableStreaming keeps protocol version 1 on PostgreSQL 14+, where the source sends each
	// transaction whole at its commit. By default protocol 2 streams large transactions in parts
	// before their commit and they are spooled.
	DisableStreaming bool
}

// Progress is the stream's position.
type Progress struct {
	// AppliedLSN is the commit LSN of the last source transaction committed on the destination.
	AppliedLSN pglogrepl.LSN
	// FlushedLSN: everything before it is applied (committed on the destination) or irrelevant
	// to the selection. The source is told it once the destination has flushed those commits
	// (durable.go).
	FlushedLSN pglogrepl.LSN
	// ServerWALEnd is the latest WAL end the source reported.
	ServerWALEnd pglogrepl.LSN
	// LastCommitTime is the source commit time of the last applied transaction.
	LastCommitTime time.Time
	// LastApplyTime is when it was committed on the destination.
	LastApplyTime time.Time
	Counts        Counts
	// LastSchemaChange is the last schema change applied: its tag and the source's statement.
	LastSchemaChange string
	// Tables is the table list once schema changes changed it (TablesVersion > 0 counts the
	// changes in this stream), sorted by source name.
	Tables        []spec.TableMap
	TablesVersion int
	// Renamed lists the destination tables renamed in this stream (following their source
	// tables), in order, sent with Tables.
	Renamed []spec.Rename
	// NotReplicated counts the schema changes of other objects in the selected schemas (views,
	// functions, types), which are not replicated while streaming; LastNotReplicated names the last.
	NotReplicated     int
	LastNotReplicated string
	// ReachedStop: the stream ended at StopBefore.
	ReachedStop bool
}

// Stream applies the slot's changes to dest until ctx is done or an error occurs. It resumes from
// the LSN recorded in the destination's progress table, skips every transaction at or below it,
// and writes the new LSN in the same destination transaction as the changes it covers. The
// source's flush position moves only once the destination has flushed that commit (the apply
// commits asynchronously: durable.go).
func Stream(ctx context.Context, repl *pgconn.PgConn, dest *pgx.Conn, opts StreamOptions) error {
	if opts.StatusInterval == 0 {
		opts.StatusInterval = 5 * time.Second
	}
	if opts.SilenceLimit == 0 {
		opts.SilenceLimit = 2 * time.Minute
	}
	if opts.BatchWindow == 0 {
		opts.BatchWindow = 100 * time.Millisecond
	}
	if opts.BatchIdle == 0 {
		opts.BatchIdle = time.Millisecond
	}
	if opts.BatchChanges == 0 {
		opts.BatchChanges = 20000
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if err := bookkeeping.Ensure(ctx, dest); err != nil {
		return err
	}
	if err := prepareApplySession(ctx, dest); err != nil {
		return err
	}
	// The session goes back to synchronous commits for whatever uses it after the stream.
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = dest.Exec(ctx, "SET synchronous_commit = on") // a session that fails it is not used again
	}()
	// The last run may have ended without its last commits flushed (a worker that died): the
	// position read below is told to the source once the WAL now written is flushed.
	walNow, walFlushed, err := readWAL(ctx, dest)
	if err != nil {
		return err
	}
	position, err := bookkeeping.AppliedPosition(ctx, dest, opts.Task)
	if err != nil {
		return err
	}
	applied := position.LSN
	laneRows, err := bookkeeping.LaneRows(ctx, dest, opts.Task, applied)
	if err != nil {
		return err
	}
	s := &stream{
		ctx:      ctx,
		peekable: true,
		dest:     dest,
		opts:     opts,
		app:      newApplier(dest, opts.Tables, opts.Log),
	}
	s.src, err = source.StartReader(ctx, repl, source.ReaderOptions{
		Slot: opts.Slot, Publication: opts.Publication, From: applied, Timeline: position.Timeline,
		DisableStreaming: opts.DisableStreaming, SpoolDir: opts.SpoolDir,
		EventsPrefix: opts.SchemaChanges, EventsTable: opts.SchemaChangeTable,
		SilenceLimit: opts.SilenceLimit, Throttle: opts.Throttle, Log: opts.Log,
	}, s)
	if err != nil {
		return err
	}
	defer s.src.Close()
	s.timeline = s.src.Timeline()
	s.app.upsert = opts.Upsert
	s.app.unknown = opts.Unknown
	if opts.SchemaChanges != "" {
		if err := s.app.loadSchemaModel(ctx, opts.Task, opts.Objects); err != nil {
			return err
		}
	}
	s.app.skipBefore = opts.SkipBefore
	if s.app.replay = newReplayWindow(laneRows); s.app.replay != nil {
		opts.Log.Info("apply lanes of the last run went past the task's position: what they applied is skipped",
			zap.Stringer("position", applied), zap.Stringer("lanes_through", s.app.replay.end))
	}
	s.prog.AppliedLSN = applied
	s.gate.committed(walNow, walFlushed)
	s.reach(applied)
	lanes := 1
	if opts.Lanes > 1 && opts.ExactChanges == 0 {
		if opts.OpenLane == nil {
			return errclass.Permanent(fmt.Errorf("internal: %d apply lanes without a way to open their sessions", opts.Lanes))
		}
		lanes = opts.Lanes
		if s.par, err = startLanes(ctx, s, lanes); err != nil {
			return err
		}
		defer s.par.close()
	}
	opts.Log.Info("change stream started", zap.String("slot", opts.Slot), zap.Stringer("from", applied), zap.Int("protocol", s.src.Protocol()), zap.Int("lanes", lanes))
	err = s.run()
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// Ended from outside: a statement in flight fails with its connection closed (pgx
		// closes it on cancellation). The end is the reason; the statement's error stays in the
		// text and the chain.
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// prepareApplySession sets up a destination session for change apply.
func prepareApplySession(ctx context.Context, dest *pgx.Conn) error {
	if _, err := dest.Exec(ctx, "SET session_replication_role = replica"); err != nil {
		return errclass.Permanent(fmt.Errorf("destination: SET session_replication_role = replica: %w (grant the account superuser or the right to set it)", err))
	}
	// A table whose row level security applies to the account would have the apply's changes
	// filtered by its policies without a word: with row_security off, such a statement fails
	// and says so instead.
	if _, err := dest.Exec(ctx, "SET row_security = off"); err != nil {
		return fmt.Errorf("destination: SET row_security = off: %w", err)
	}
	// Keyed batches (keyed.go) pass their rows in array parameters. A custom plan, made for the
	// arrays' sizes, may hash them and scan the whole table; the generic plan probes the key's
	// index row by row, and is not planned again for every batch.
	if _, err := dest.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		return fmt.Errorf("destination: SET plan_cache_mode: %w", err)
	}
	// Commits need not wait for their WAL flush: the source is told only flushed positions
	// (durable.go).
	if _, err := dest.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return fmt.Errorf("destination: SET synchronous_commit: %w", err)
	}
	return nil
}

// stream applies what its Reader receives (it is the reader's source.Sink): source transactions
// grouped into destination transactions, on one session or over the lanes (parallel.go).
type stream struct {
	// timeline is the source's timeline, recorded with each applied position.
	timeline int32
	ctx      context.Context
	src      *source.Reader
	dest     *pgx.Conn
	opts     StreamOptions
	app      *applier
	par      *parallel // the apply lanes, with StreamOptions.Lanes > 1
	prog     Progress
	// gate holds back the positions told to the source until the destination commits they
	// depend on are flushed (durable.go).
	gate flushGate

	inSourceTx bool // between Begin and Commit
	skipTx     bool // the current source transaction was applied before
	txOpen     bool // a destination transaction is open
	txStarted  time.Time
	lastCommit time.Time // when the last source commit of the open destination transaction arrived
	txChanges  int
	changes    int // since the stream started
	// pendingApplied/pendingFlush/pendingCommitTime describe the source transactions grouped in
	// the open destination transaction.
	pendingApplied    pglogrepl.LSN
	pendingFlush      pglogrepl.LSN
	pendingCommitTime time.Time
	pendingCounts     Counts
	nextStatus        time.Time
	// peekable: the replication socket can be asked whether bytes wait on it (dbconn.Waiting);
	// bytesWaiting: they did when it was last asked, and nothing was received since.
	peekable, bytesWaiting bool
}

func (s *stream) run() error {
	defer s.src.Interrupt(s.ctx)()
	defer func() {
		if s.txOpen {
			s.app.discard()
			_, _ = s.dest.Exec(context.WithoutCancel(s.ctx), "ROLLBACK")
		}
	}()
	s.nextStatus = time.Now()
	started := time.Now()
	var err error
	for {
		if end, err := s.ended(started); end {
			return err
		}
		moved := false
		if s.par != nil {
			if moved, err = s.par.collect(s.ctx, false); err != nil {
				return err
			}
		}
		if due := !time.Now().Before(s.nextStatus); moved || due {
			if due {
				if err := s.checkFlushed(); err != nil {
					return err
				}
			}
			if err := s.progressed(); err != nil {
				return err
			}
		}
		deadline := s.nextStatus
		if s.par != nil && len(s.par.fifo) > 0 {
			// The lanes report their commits on a channel: look at it again within a
			// millisecond, keeping the deadline already set while it is that near (setting one
			// is a system call).
			now := time.Now()
			soon := s.src.Deadline()
			if !soon.After(now) || soon.After(now.Add(time.Millisecond)) {
				soon = now.Add(time.Millisecond)
			}
			if soon.Before(deadline) {
				deadline = soon
			}
		}
		drain := false
		if s.txOpen && !s.inSourceTx {
			if d := s.commitDue(); d.Before(deadline) {
				deadline = d
			}
			if s.pendingApplied > s.prog.AppliedLSN && s.peekable && !s.bytesWaiting {
				// Whole source transactions wait for their commit: take only the messages
				// received already, then ask the socket whether more have arrived (below).
				deadline, drain = time.Unix(1, 0), true
			}
		}
		err = s.src.Receive(s.ctx, deadline)
		if errors.Is(err, errReachedStop) {
			return nil
		}
		if err == nil {
			s.bytesWaiting = false
			continue
		}
		if drain && pgconn.Timeout(err) && s.ctx.Err() == nil {
			// Nothing more is buffered. Bytes on the socket are read (they are what a backlog's
			// next transactions begin with, grouped into this destination transaction); with
			// none, the transactions commit now: no idle wait.
			s.bytesWaiting, s.peekable = s.src.Waiting()
			if !s.bytesWaiting && s.peekable {
				if err := s.commit(s.ctx); err != nil {
					return err
				}
			}
			continue
		}
		if pgconn.Timeout(err) && s.ctx.Err() == nil {
			if err := s.src.Silent(); err != nil {
				return err
			}
			if s.txOpen && !s.inSourceTx && !time.Now().Before(s.commitDue()) {
				if err := s.commit(s.ctx); err != nil {
					return err
				}
			}
			continue
		}
		if s.ctx.Err() != nil {
			continue // handled at the top of the loop
		}
		return err
	}
}

// ended ends the stream where it should: after RunFor at a transaction boundary, at StopAt, or
// when its context ends (what is applied is committed, and the lanes meet if they can).
func (s *stream) ended(started time.Time) (bool, error) {
	finish := func(ctx context.Context) error {
		if s.par == nil {
			return nil
		}
		return s.par.finish(ctx)
	}
	switch {
	case s.opts.RunFor > 0 && time.Since(started) >= s.opts.RunFor && !s.inSourceTx && !s.src.Busy():
		if s.txOpen {
			if err := s.commit(s.ctx); err != nil {
				return true, err
			}
		}
		if err := finish(s.ctx); err != nil {
			return true, err
		}
		if err := s.makeDurable(s.ctx); err != nil {
			return true, err
		}
		return true, s.progressed()
	case s.opts.StopAt != 0 && s.prog.FlushedLSN >= s.opts.StopAt && !s.txOpen && !s.inSourceTx,
		s.opts.StopBefore != 0 && s.prog.FlushedLSN >= s.opts.StopBefore && !s.txOpen && !s.inSourceTx:
		if err := finish(s.ctx); err != nil {
			return true, err
		}
		if err := s.makeDurable(s.ctx); err != nil {
			return true, err
		}
		s.prog.ReachedStop = s.opts.StopBefore != 0
		return true, s.progressed()
	case s.ctx.Err() != nil:
		if s.txOpen && !s.inSourceTx {
			if err := s.commit(context.WithoutCancel(s.ctx)); err != nil {
				return true, err
			}
		}
		if s.par != nil && !s.par.serial && context.Cause(s.ctx) == context.Canceled {
			// Asked to end (a pause, a release): the lanes finish what they were given and meet,
			// so that the task's position covers it. A destination too slow for that leaves them
			// apart, which the next run handles.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
			if ferr := finish(ctx); ferr != nil {
				s.opts.Log.Warn("the apply lanes did not meet before the stream ended", zap.Error(ferr))
			}
			cancel()
		}
		// The source is told where the stream ended (a paused task shows no lag it does not
		// have), if the destination flushes it in time.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
		defer cancel()
		if err := s.makeDurable(ctx); err != nil {
			s.opts.Log.Warn("the destination did not flush the stream's last commits before it ended", zap.Error(err))
		} else if err := s.src.SendStatus(ctx, s.gate.confirmed); err != nil {
			s.opts.Log.Warn("the source was not told where the stream ended", zap.Error(err))
		}
		return true, s.ctx.Err()
	}
	return false, nil
}

// WALEnd records the source's WAL end (source.Sink). With no transaction in flight, everything
// before it has been received and applied, so it can be acknowledged.
func (s *stream) WALEnd(end pglogrepl.LSN, replyRequested bool) {
	if end > s.prog.ServerWALEnd {
		s.prog.ServerWALEnd = end
	}
	if !s.inSourceTx && !s.txOpen && (s.par == nil || s.par.idle()) && end > s.prog.FlushedLSN {
		s.reach(end)
	}
	if replyRequested {
		s.nextStatus = time.Time{}
	}
}

// lanes reports whether the lanes take the current source transaction: there are lanes, and it
// is not a barrier.
func (s *stream) lanes() bool { return s.par != nil && !s.par.serial }

// errReachedStop ends the stream at StreamOptions.StopBefore.
var errReachedStop = errors.New("reached the stream's stop position")

// Begin starts a source transaction (source.Sink); one applied before is skipped.
func (s *stream) Begin(m *pglogrepl.BeginMessage, streamed bool) (bool, error) {
	if s.opts.StopBefore != 0 && m.FinalLSN >= s.opts.StopBefore && m.FinalLSN > s.prog.AppliedLSN {
		// Everything before it is received: what is applied commits, the lanes meet.
		if s.txOpen {
			if err := s.commit(s.ctx); err != nil {
				return false, err
			}
		}
		if s.par != nil {
			if err := s.par.finish(s.ctx); err != nil {
				return false, err
			}
		}
		s.prog.ReachedStop = true
		if err := s.makeDurable(s.ctx); err != nil {
			return false, err
		}
		if err := s.progressed(); err != nil {
			return false, err
		}
		return false, errReachedStop
	}
	s.inSourceTx = true
	s.skipTx = m.FinalLSN <= s.prog.AppliedLSN
	switch {
	case s.skipTx:
		// Nothing of it is applied or held: its relation descriptions go to every lane at once.
	case s.lanes():
		// A streamed transaction is a barrier: too large to hold.
		if err := s.par.begin(m, streamed); err != nil {
			return false, err
		}
	default:
		s.app.txLSN = m.FinalLSN
	}
	if streamed && !s.skipTx {
		s.app.counts.Streamed++
	}
	return s.skipTx, nil
}

// Relation takes a relation description (source.Sink).
func (s *stream) Relation(m *pglogrepl.RelationMessage) error {
	if s.lanes() {
		return s.par.relation(m)
	}
	return s.app.describe(s.ctx, m)
}

// Row applies an insert, update or delete (source.Sink), or gives it to its lane.
func (s *stream) Row(m pglogrepl.Message) error {
	if s.lanes() {
		return s.par.route(m)
	}
	return s.change(func() error { return s.app.row(s.ctx, m) })
}

// Change applies a truncate or a schema change (source.Sink): with lanes, as a barrier.
func (s *stream) Change(m pglogrepl.Message) error {
	if s.lanes() {
		if err := s.par.toSerial(); err != nil {
			return err
		}
	}
	return s.change(func() error { return s.app.change(s.ctx, m) })
}

// Commit ends a source transaction (source.Sink): it is grouped into the open destination
// transaction, which commits when its batch is full or its window over (or when the stream
// finds nothing more waiting: run).
func (s *stream) Commit(m *pglogrepl.CommitMessage) error {
	s.inSourceTx = false
	if s.skipTx {
		s.skipTx = false
		return nil
	}
	if s.lanes() {
		return s.par.give(m)
	}
	if err := s.commitSource(m); err != nil {
		return err
	}
	if s.par != nil {
		return s.par.endSerial()
	}
	return nil
}

// commitSource takes a source commit into the open destination transaction.
func (s *stream) commitSource(m *pglogrepl.CommitMessage) error {
	if !s.txOpen {
		// Nothing of the selection changed in this transaction (a heartbeat, or other tables):
		// everything before its end is applied, and the selection is current as of its commit
		// time.
		s.reach(m.TransactionEndLSN)
		if m.CommitTime.After(s.prog.LastCommitTime) {
			s.prog.LastCommitTime = m.CommitTime
		}
		return nil
	}
	s.pendingApplied = m.CommitLSN
	s.pendingFlush = m.TransactionEndLSN
	s.pendingCommitTime = m.CommitTime
	s.pendingCounts.Transactions++
	s.lastCommit = time.Now()
	if s.txChanges >= s.opts.BatchChanges || !time.Now().Before(s.txStarted.Add(s.opts.BatchWindow)) {
		return s.commit(s.ctx)
	}
	return nil
}

// commitDue is when the open destination transaction, holding only whole source transactions,
// commits at the latest: at the end of its batch window, or, where the socket cannot be asked
// whether more has arrived (see run), once the stream went idle after a source commit.
func (s *stream) commitDue() time.Time {
	due := s.txStarted.Add(s.opts.BatchWindow)
	if s.peekable {
		return due
	}
	if idle := s.lastCommit.Add(s.opts.BatchIdle); s.pendingApplied > s.prog.AppliedLSN && idle.Before(due) {
		due = idle
	}
	return due
}

// change applies one change of the current source transaction, paced by the throttle.
func (s *stream) change(apply func() error) error {
	if err := s.opts.Throttle.Wait(s.ctx, 1, 0); err != nil {
		return err
	}
	return s.apply(apply)
}

// apply applies one change in the open destination transaction, opening it first.
func (s *stream) apply(apply func() error) error {
	if !s.txOpen {
		if err := s.app.begin(s.ctx); err != nil {
			return err
		}
		s.txOpen = true
		s.txStarted = time.Now()
		s.txChanges = 0
		s.app.exact = s.changes < s.opts.ExactChanges
	}
	s.txChanges++
	s.changes++
	return apply()
}

func (s *stream) commit(ctx context.Context) error {
	if s.pendingApplied == 0 || s.pendingApplied <= s.prog.AppliedLSN {
		// Only a partial source transaction is open: drop it; it will be sent again.
		begun := !s.app.beginPending
		s.app.discard()
		s.txOpen = false
		if !begun {
			return nil // nothing of it reached the destination
		}
		_, err := s.dest.Exec(ctx, "ROLLBACK")
		return err
	}
	through := s.pendingApplied.String()
	if err := s.app.commit(ctx, bookkeeping.AppliedSQL, bookkeeping.AppliedParams(s.opts.Task, s.pendingApplied, s.timeline), through); err != nil {
		return err
	}
	s.txOpen = false
	s.prog.AppliedLSN = s.pendingApplied
	s.gate.committed(s.app.walCommitted, s.app.walFlushed)
	s.reach(s.pendingFlush)
	s.prog.LastCommitTime = s.pendingCommitTime
	s.prog.LastApplyTime = time.Now()
	s.app.counts.Transactions += s.pendingCounts.Transactions
	s.pendingCounts = Counts{}
	s.prog.Counts = s.app.counts
	s.prog.LastSchemaChange = s.app.lastSchemaChange
	s.prog.NotReplicated = len(s.app.notReplicated)
	if n := len(s.app.notReplicated); n > 0 {
		s.prog.LastNotReplicated = s.app.notReplicated[n-1]
	}
	if s.app.tablesVersion != s.prog.TablesVersion {
		s.prog.TablesVersion = s.app.tablesVersion
		s.prog.Tables = s.app.tableList()
		s.prog.Renamed = slices.Clone(s.app.renamed)
	}
	if err := s.sendStatus(); err != nil {
		return err
	}
	if s.opts.OnProgress != nil {
		s.opts.OnProgress(s.prog)
	}
	return nil
}

// reach records that everything before the source position pos is applied (Progress.FlushedLSN);
// the source is told once the destination has flushed it (gate).
func (s *stream) reach(pos pglogrepl.LSN) {
	s.prog.FlushedLSN = max(s.prog.FlushedLSN, pos)
	s.gate.reached(pos)
}

// checkFlushed asks the destination how far its WAL is flushed when positions wait for it and
// its session is free: no destination transaction open, no lane at work.
func (s *stream) checkFlushed() error {
	if !s.gate.waiting() || s.txOpen {
		return nil
	}
	if s.par != nil && !s.par.idle() || s.par == nil && s.app.inflight != nil {
		return nil
	}
	flushed, err := readFlushed(s.ctx, s.dest)
	if err != nil {
		return err
	}
	s.gate.flushedTo(flushed)
	return nil
}

// makeDurable has the destination flush every commit of the stream, so that the source can be
// told its whole position (at a stop: the next run may not come soon). It does nothing while the
// session is not free or lanes have not met (the task's progress row is not theirs to write).
func (s *stream) makeDurable(ctx context.Context) error {
	if !s.gate.waiting() || s.txOpen || s.par != nil && !s.par.idle() || s.prog.AppliedLSN == 0 {
		return nil // (nothing applied ever: only positions of other tables wait, told later)
	}
	flushed, err := forceFlush(ctx, s.dest, bookkeeping.AppliedSQL, bookkeeping.AppliedParams(s.opts.Task, s.prog.AppliedLSN, s.timeline))
	if err != nil {
		return err
	}
	s.gate.flushedTo(flushed)
	return nil
}

// progressed tells the source and OnProgress the stream's position.
func (s *stream) progressed() error {
	if err := s.sendStatus(); err != nil {
		return err
	}
	if s.opts.OnProgress != nil {
		s.opts.OnProgress(s.prog)
	}
	return nil
}

func (s *stream) sendStatus() error {
	if err := s.src.SendStatus(s.ctx, s.gate.confirmed); err != nil {
		return err
	}
	s.nextStatus = time.Now().Add(s.opts.StatusInterval)
	return nil
}
