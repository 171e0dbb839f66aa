package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/dbconn"
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
	// FlushedLSN is the position acknowledged to the source (everything before it is applied or
	// irrelevant to the selection).
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
}

// Stream applies the slot's changes to dest until ctx is done or an error occurs. It resumes from
// the LSN recorded in the destination's progress table, skips every transaction at or below it,
// and writes the new LSN in the same destination transaction as the changes it covers. The
// source's flush position moves only after the destination commit.
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
	position, err := bookkeeping.AppliedPosition(ctx, dest, opts.Task)
	if err != nil {
		return err
	}
	applied := position.LSN
	laneRows, err := bookkeeping.LaneRows(ctx, dest, opts.Task, applied)
	if err != nil {
		return err
	}
	ident, err := pglogrepl.IdentifySystem(ctx, repl)
	if err != nil {
		return fmt.Errorf("identify the source: %w", err)
	}
	if followed, err := checkTimeline(ctx, repl, applied, position.Timeline, ident.Timeline); err != nil {
		return err
	} else if followed {
		opts.Log.Warn("the source failed over or was restored; every change the destination applied is in its history: the stream goes on",
			zap.Int32("from_timeline", position.Timeline), zap.Int32("to_timeline", ident.Timeline), zap.Stringer("applied", applied))
	}
	if applied > ident.XLogPos {
		return errclass.Permanent(fmt.Errorf("the destination has applied the source's changes up to %s but the source's WAL ends at %s: "+
			"this is not the server the task streamed from (a failover to a server that was behind, or a restore); "+
			"the change stream cannot continue: release the task and start it again", applied, ident.XLogPos))
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.Getenv("SKEIN_SPOOL_DIR")
	}
	// PostgreSQL 14+ streams large transactions while they run (protocol 2) and forwards the
	// heartbeat messages Skein emits into the WAL.
	proto := 1
	args := []string{"proto_version '1'"}
	if major := serverMajor(repl); major >= 14 && !opts.DisableStreaming {
		proto = 2
		args = []string{"proto_version '2'", "streaming 'on'", "messages 'true'"}
	}
	args = append(args, fmt.Sprintf("publication_names '%s'", opts.Publication))
	// The walsender of a stream that just ended (a restart) may hold the slot a moment longer.
	for wait := time.Now().Add(10 * time.Second); ; {
		err = pglogrepl.StartReplication(ctx, repl, opts.Slot, applied, pglogrepl.StartReplicationOptions{PluginArgs: args})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(wait) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42704" {
			return errclass.Permanent(fmt.Errorf("replication slot %s no longer exists on the source: the change stream is lost; release the task and start it again: %w", opts.Slot, err))
		}
		return slotLost(opts.Slot, fmt.Errorf("start replication from slot %s at %s: %w", opts.Slot, applied, err))
	}
	s := &stream{
		ctx:      ctx,
		peekable: true,
		repl:     repl,
		dest:     dest,
		opts:     opts,
		app:      newApplier(dest, opts.Tables, opts.Log),
		proto:    proto,
		spools:   map[uint32]*spool{},
		timeline: ident.Timeline,
	}
	defer s.closeSpools()
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
	s.prog.FlushedLSN = applied
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
	opts.Log.Info("change stream started", zap.String("slot", opts.Slot), zap.Stringer("from", applied), zap.Int("protocol", proto), zap.Int("lanes", lanes))
	return s.run()
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
	return nil
}

// slotLost marks err permanent, with the reason, when the source says the slot can no longer give
// its changes: invalidated (it kept more WAL than max_slot_wal_keep_size allows) or its WAL
// removed. Nothing can bring those changes back.
func slotLost(slot string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == "55000" && (strings.Contains(pgErr.Message, "cannot read from logical replication slot") ||
		strings.Contains(pgErr.Message, "can no longer get changes")):
		return errclass.Permanent(fmt.Errorf("replication slot %s was invalidated on the source (it needed more WAL than max_slot_wal_keep_size keeps, or the WAL was removed): "+
			"the changes since are lost; release the task and start it again (raise max_slot_wal_keep_size, or keep the task streaming): %w", slot, err))
	case pgErr.Code == "58P01" && strings.Contains(pgErr.Message, "has already been removed"):
		return errclass.Permanent(fmt.Errorf("the WAL the replication slot %s needs was removed from the source: the changes since are lost; release the task and start it again: %w", slot, err))
	}
	return err
}

type stream struct {
	// timeline is the source's timeline, recorded with each applied position.
	timeline int32
	ctx      context.Context
	repl     *pgconn.PgConn
	dest     *pgx.Conn
	opts     StreamOptions
	app      *applier
	par      *parallel // the apply lanes, with StreamOptions.Lanes > 1
	prog     Progress
	rows     rowDecoder
	// eventsRel is the relation ID of StreamOptions.SchemaChangeTable, once described.
	eventsRel uint32

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
	readDeadline      time.Time // set on the replication connection
	replyDue          time.Time // the source must have answered a reply request by then; zero: answered
	// peekable: the replication socket can be asked whether bytes wait on it (dbconn.Waiting);
	// bytesWaiting: they did when it was last asked, and nothing was received since.
	peekable, bytesWaiting bool

	proto     int               // pgoutput protocol version
	inStream  bool              // between StreamStart and StreamStop
	streamXid uint32            // the transaction the current stream segment belongs to
	spools    map[uint32]*spool // streamed transactions waiting for their commit or abort
}

// serverMajor is the source's major version as the replication connection reports it.
func serverMajor(conn *pgconn.PgConn) int {
	v := conn.ParameterStatus("server_version")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(v)
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

func (s *stream) closeSpools() {
	for xid, sp := range s.spools {
		sp.close()
		delete(s.spools, xid)
	}
}

// receive reads the next message from the source, or times out at deadline. The deadline is set
// on the connection itself, not through a context: a context per message costs a goroutine
// handoff and a timer, which showed as a sixth of the apply's CPU time. The stream's context
// interrupts a read through the same deadline (run's context.AfterFunc).
func (s *stream) receive(deadline time.Time) (pgproto3.BackendMessage, error) {
	if !deadline.Equal(s.readDeadline) {
		if err := s.repl.Conn().SetReadDeadline(deadline); err != nil {
			return nil, slotLost(s.opts.Slot, fmt.Errorf("receive from slot %s: %w", s.opts.Slot, err))
		}
		s.readDeadline = deadline
	}
	if err := s.ctx.Err(); err != nil {
		// Cancelled between the check at the top of the loop and the deadline just set, which
		// may have replaced the one the cancellation set: do not wait for the new one.
		return nil, err
	}
	return s.repl.ReceiveMessage(context.Background())
}

func (s *stream) run() error {
	stop := context.AfterFunc(s.ctx, func() { _ = s.repl.Conn().SetReadDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		_ = s.repl.Conn().SetReadDeadline(time.Time{})
	}()
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
		if s.opts.RunFor > 0 && time.Since(started) >= s.opts.RunFor && !s.inSourceTx && !s.inStream && len(s.spools) == 0 {
			if s.txOpen {
				if err := s.commit(s.ctx); err != nil {
					return err
				}
			}
			if s.par != nil {
				if err := s.par.finish(s.ctx); err != nil {
					return err
				}
			}
			return s.progressed()
		}
		if s.opts.StopAt != 0 && s.prog.FlushedLSN >= s.opts.StopAt && !s.txOpen && !s.inSourceTx {
			if s.par != nil {
				if err := s.par.finish(s.ctx); err != nil {
					return err
				}
			}
			return s.progressed()
		}
		if err := s.ctx.Err(); err != nil {
			if s.txOpen && !s.inSourceTx {
				if err := s.commit(context.WithoutCancel(s.ctx)); err != nil {
					return err
				}
			}
			if s.par != nil && !s.par.serial && context.Cause(s.ctx) == context.Canceled {
				// Asked to end (a pause, a release): the lanes finish what they were given and
				// meet, so that the task's position covers it. A destination too slow for that
				// leaves them apart, which the next run handles.
				ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
				if ferr := s.par.finish(ctx); ferr != nil {
					s.opts.Log.Warn("the apply lanes did not meet before the stream ended", zap.Error(ferr))
				}
				cancel()
			}
			return err
		}
		moved := false
		if s.par != nil {
			if moved, err = s.par.collect(s.ctx, false); err != nil {
				return err
			}
		}
		if moved || !time.Now().Before(s.nextStatus) {
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
			soon := s.readDeadline
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
		raw, err := s.receive(deadline)
		if err == nil {
			s.replyDue = time.Time{} // the source answers
			s.bytesWaiting = false
		}
		if err != nil {
			if drain && pgconn.Timeout(err) && s.ctx.Err() == nil {
				// Nothing more is buffered. Bytes on the socket are read (they are what a
				// backlog's next transactions begin with, grouped into this destination
				// transaction); with none, the transactions commit now: no idle wait.
				s.bytesWaiting, s.peekable = dbconn.Waiting(s.repl.Conn())
				if !s.bytesWaiting && s.peekable {
					if err := s.commit(s.ctx); err != nil {
						return err
					}
				}
				continue
			}
			if pgconn.Timeout(err) && s.ctx.Err() == nil {
				if !s.replyDue.IsZero() && time.Now().After(s.replyDue) {
					// A network that drops everything without a reset leaves the connection open
					// and silent: without this, the stream would wait for ever.
					return fmt.Errorf("slot %s: the source has not answered for %s (the network to it is down or stalled): %w",
						s.opts.Slot, s.opts.SilenceLimit, os.ErrDeadlineExceeded)
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
			return slotLost(s.opts.Slot, fmt.Errorf("receive from slot %s: %w", s.opts.Slot, err))
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("slot %s: %w", s.opts.Slot, pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if err := s.handleCopyData(msg.Data); err != nil {
				return err
			}
		}
	}
}

func (s *stream) handleCopyData(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		s.observeWALEnd(ka.ServerWALEnd)
		if ka.ReplyRequested {
			s.nextStatus = time.Time{}
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse WAL data: %w", err)
		}
		if err := s.handleWAL(xld.WALData); err != nil {
			return err
		}
		s.observeWALEnd(xld.ServerWALEnd)
	}
	return nil
}

// observeWALEnd records the source's WAL end. With no transaction in flight, everything before it
// has been received and applied, so it can be acknowledged.
func (s *stream) observeWALEnd(end pglogrepl.LSN) {
	if end > s.prog.ServerWALEnd {
		s.prog.ServerWALEnd = end
	}
	if !s.inSourceTx && !s.txOpen && (s.par == nil || s.par.idle()) && end > s.prog.FlushedLSN {
		s.prog.FlushedLSN = end
	}
}

func (s *stream) handleWAL(walData []byte) error {
	if err := s.opts.Throttle.Wait(s.ctx, 0, len(walData)); err != nil {
		return err
	}
	if s.eventsRel != 0 && len(walData) > 5 && walData[0] == 'I' && binary.BigEndian.Uint32(walData[1:]) == s.eventsRel {
		return s.eventRow(walData)
	}
	if isRowMessage(walData) && !s.inStream {
		if s.par != nil && !s.par.serial {
			return s.par.route(walData)
		}
		return s.applyRaw(walData)
	}
	if s.proto == 1 {
		msg, err := pglogrepl.Parse(walData)
		if err != nil {
			return fmt.Errorf("decode pgoutput message: %w", err)
		}
		if r, ok := msg.(*pglogrepl.RelationMessage); ok && s.opts.SchemaChangeTable.Name != "" &&
			r.Namespace == s.opts.SchemaChangeTable.Schema && r.RelationName == s.opts.SchemaChangeTable.Name {
			s.eventsRel = r.RelationID
			return nil // not a table of the task
		}
		return s.dispatch(msg)
	}
	msg, err := pglogrepl.ParseV2(walData, s.inStream)
	if err != nil {
		return fmt.Errorf("decode pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.StreamStartMessageV2:
		s.inStream, s.streamXid = true, m.Xid
		if sp, ok := s.spools[m.Xid]; ok && m.FirstSegment == 1 {
			sp.close() // sent again from its start
			delete(s.spools, m.Xid)
		}
		if _, ok := s.spools[m.Xid]; !ok {
			sp, err := newSpool(s.opts.SpoolDir, m.Xid)
			if err != nil {
				return err
			}
			s.spools[m.Xid] = sp
		}
		return nil
	case *pglogrepl.StreamStopMessageV2:
		s.inStream = false
		return nil
	case *pglogrepl.StreamAbortMessageV2:
		sp, ok := s.spools[m.Xid]
		switch {
		case !ok:
			return nil
		case m.SubXid == m.Xid || m.SubXid == 0:
			sp.close()
			delete(s.spools, m.Xid)
			return nil
		default:
			return sp.abortSub(m.SubXid)
		}
	case *pglogrepl.StreamCommitMessageV2:
		return s.replaySpool(m)
	}
	if s.inStream {
		sp := s.spools[s.streamXid]
		if sp == nil {
			return fmt.Errorf("streamed change of transaction %d outside a stream", s.streamXid)
		}
		_, xid := unwrapV2(msg)
		if xid == 0 {
			xid = s.streamXid
		}
		return sp.add(xid, walData)
	}
	inner, _ := unwrapV2(msg)
	return s.dispatch(inner)
}

// unwrapV2 returns the protocol 1 message inside a protocol 2 one and, for a streamed message,
// the (sub)transaction it belongs to (0 otherwise).
func unwrapV2(msg pglogrepl.Message) (pglogrepl.Message, uint32) {
	switch m := msg.(type) {
	case *pglogrepl.InsertMessageV2:
		return &m.InsertMessage, m.Xid
	case *pglogrepl.UpdateMessageV2:
		return &m.UpdateMessage, m.Xid
	case *pglogrepl.DeleteMessageV2:
		return &m.DeleteMessage, m.Xid
	case *pglogrepl.TruncateMessageV2:
		return &m.TruncateMessage, m.Xid
	case *pglogrepl.RelationMessageV2:
		return &m.RelationMessage, m.Xid
	case *pglogrepl.TypeMessageV2:
		return &m.TypeMessage, m.Xid
	case *pglogrepl.LogicalDecodingMessageV2:
		return &m.LogicalDecodingMessage, m.Xid
	}
	return msg, 0
}

// replaySpool applies a streamed transaction at its commit, exactly as if it had been sent whole:
// begin, its messages in order, commit.
func (s *stream) replaySpool(m *pglogrepl.StreamCommitMessageV2) error {
	sp, ok := s.spools[m.Xid]
	if !ok {
		return nil
	}
	defer func() {
		sp.close()
		delete(s.spools, m.Xid)
	}()
	if s.par != nil {
		s.par.spooled = true // a barrier: too large to hold
	}
	if m.CommitLSN > s.prog.AppliedLSN {
		s.opts.Log.Info("applying streamed transaction", zap.Uint32("xid", m.Xid),
			zap.Int64("messages", sp.messages), zap.Int64("spooled_bytes", sp.size), zap.Stringer("commit_lsn", m.CommitLSN))
	}
	if err := s.dispatch(&pglogrepl.BeginMessage{FinalLSN: m.CommitLSN, CommitTime: m.CommitTime, Xid: m.Xid}); err != nil {
		return err
	}
	// Applied before (skipped): only its relation descriptions count (pgoutput sends each once
	// per session, and not again for the transactions after this one).
	skipped := s.skipTx
	if !skipped {
		s.app.counts.Streamed++
	}
	err := sp.replay(func(data []byte) error {
		if skipped && (len(data) == 0 || data[0] != 'R') {
			return nil
		}
		if isRowMessage(data) && len(data) > 5 {
			msg, err := s.rows.decode(data[0], data[5:]) // after the transaction id
			if err != nil {
				return fmt.Errorf("decode spooled message of transaction %d: %w", m.Xid, err)
			}
			return s.dispatch(msg)
		}
		msg, err := pglogrepl.ParseV2(data, true)
		if err != nil {
			return fmt.Errorf("decode spooled message of transaction %d: %w", m.Xid, err)
		}
		inner, _ := unwrapV2(msg)
		return s.dispatch(inner)
	})
	if err != nil {
		return err
	}
	return s.dispatch(&pglogrepl.CommitMessage{CommitLSN: m.CommitLSN, TransactionEndLSN: m.TransactionEndLSN, CommitTime: m.CommitTime})
}

// eventRow takes a row of StreamOptions.SchemaChangeTable (an insert: type byte first) as the
// schema-change event it holds, as the logical message a source of 14 or newer sends instead.
func (s *stream) eventRow(raw []byte) error {
	msg, err := pglogrepl.Parse(raw)
	if err != nil {
		return fmt.Errorf("decode a schema-change event row: %w", err)
	}
	ins, ok := msg.(*pglogrepl.InsertMessage)
	if !ok || ins.Tuple == nil || len(ins.Tuple.Columns) != 1 || ins.Tuple.Columns[0].DataType != pglogrepl.TupleDataTypeText {
		return fmt.Errorf("a schema-change event row of %s is not one text value", s.opts.SchemaChangeTable)
	}
	return s.dispatch(&pglogrepl.LogicalDecodingMessage{Transactional: true, Prefix: s.opts.SchemaChanges, Content: ins.Tuple.Columns[0].Data})
}

// applyRaw decodes a row message (type byte first) and applies it.
func (s *stream) applyRaw(raw []byte) error {
	msg, err := s.rows.decode(raw[0], raw[1:])
	if err != nil {
		return fmt.Errorf("decode pgoutput message: %w", err)
	}
	return s.dispatch(msg)
}

// dispatch handles one protocol 1 message: with lanes, the router takes it, unless the current
// source transaction is a barrier (parallel.go).
func (s *stream) dispatch(msg pglogrepl.Message) error {
	if s.par == nil {
		return s.dispatchOne(msg)
	}
	if !s.par.serial {
		return s.par.dispatch(msg)
	}
	if err := s.dispatchOne(msg); err != nil {
		return err
	}
	if _, ok := msg.(*pglogrepl.CommitMessage); ok {
		return s.par.endSerial()
	}
	return nil
}

// dispatchOne applies one protocol 1 message.
func (s *stream) dispatchOne(msg pglogrepl.Message) error {
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		if err := s.app.forgetRelation(s.ctx, m.RelationID, m); err != nil {
			return err
		}
		s.app.relations[m.RelationID] = m
		delete(s.app.skipped, m.RelationID) // decided again under its new description
	case *pglogrepl.BeginMessage:
		s.inSourceTx = true
		s.skipTx = m.FinalLSN <= s.prog.AppliedLSN
		s.app.txLSN = m.FinalLSN
	case *pglogrepl.CommitMessage:
		s.inSourceTx = false
		if s.skipTx {
			s.skipTx = false
			return nil
		}
		if !s.txOpen {
			// Nothing of the selection changed in this transaction (a heartbeat, or other
			// tables): everything before its end is applied, and the selection is current as
			// of its commit time.
			if m.TransactionEndLSN > s.prog.FlushedLSN {
				s.prog.FlushedLSN = m.TransactionEndLSN
			}
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
	case *pglogrepl.InsertMessage:
		return s.change(func() error { return s.app.insert(s.ctx, m) })
	case *pglogrepl.UpdateMessage:
		return s.change(func() error { return s.app.update(s.ctx, m) })
	case *pglogrepl.DeleteMessage:
		return s.change(func() error { return s.app.delete(s.ctx, m) })
	case *pglogrepl.TruncateMessage:
		return s.change(func() error { return s.app.truncate(s.ctx, m) })
	case *pglogrepl.LogicalDecodingMessage:
		if s.opts.SchemaChanges != "" && m.Transactional && m.Prefix == s.opts.SchemaChanges {
			return s.change(func() error { return s.app.schemaChange(s.ctx, m.Content) })
		}
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

func (s *stream) change(apply func() error) error {
	if s.skipTx {
		return nil
	}
	if err := s.opts.Throttle.Wait(s.ctx, 1, 0); err != nil {
		return err
	}
	if !s.txOpen {
		s.app.beginPending = true // sent with the first statement (batch.go)
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
	if s.pendingFlush > s.prog.FlushedLSN {
		s.prog.FlushedLSN = s.pendingFlush
	}
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
	// The source answers a status that asks for a reply at once: silence past SilenceLimit
	// means the connection is gone.
	err := pglogrepl.SendStandbyStatusUpdate(s.ctx, s.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.prog.FlushedLSN,
		WALFlushPosition: s.prog.FlushedLSN,
		WALApplyPosition: s.prog.FlushedLSN,
		ReplyRequested:   true,
	})
	if s.replyDue.IsZero() {
		s.replyDue = time.Now().Add(s.opts.SilenceLimit)
	}
	if err != nil {
		return fmt.Errorf("send standby status to slot %s: %w", s.opts.Slot, err)
	}
	s.nextStatus = time.Now().Add(s.opts.StatusInterval)
	return nil
}
