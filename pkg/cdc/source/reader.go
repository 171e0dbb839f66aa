package source

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
)

// Sink takes a slot's change stream from a Reader, decoded, in source order: each source
// transaction as Begin, its relation descriptions, rows and other changes, Commit. What a call
// is given is valid during the call only (rows point into the message received).
type Sink interface {
	// Begin starts a source transaction; streamed: a large one the source sent in parts before
	// its commit, replayed from the spool. With skip (the sink applied it before) only the
	// transaction's relation descriptions and its Commit follow.
	Begin(m *pglogrepl.BeginMessage, streamed bool) (skip bool, err error)
	// Relation describes a relation before its first row in the session, or again after it
	// changed.
	Relation(m *pglogrepl.RelationMessage) error
	// Row is an insert, update or delete (*pglogrepl.InsertMessage, UpdateMessage,
	// DeleteMessage).
	Row(m pglogrepl.Message) error
	// Change is a truncate, or a schema-change event (a transactional logical message with
	// ReaderOptions.EventsPrefix, also when it came as a row of ReaderOptions.EventsTable).
	Change(m pglogrepl.Message) error
	// Commit ends the source transaction.
	Commit(m *pglogrepl.CommitMessage) error
	// WALEnd is the end of the source's WAL as the source reported it; replyRequested: the
	// source asks for the position at once.
	WALEnd(end pglogrepl.LSN, replyRequested bool)
}

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	Slot        string
	Publication string
	// From is the position the destination applied (the stream starts there); Timeline the
	// source timeline recorded with it (0: none yet).
	From     pglogrepl.LSN
	Timeline int32
	// DisableStreaming keeps protocol version 1 on PostgreSQL 14+, where the source sends each
	// transaction whole at its commit. By default protocol 2 streams large transactions in parts
	// before their commit and they are spooled in SpoolDir ("" = $SKEIN_SPOOL_DIR or the system's
	// temp directory).
	DisableStreaming bool
	SpoolDir         string
	// EventsPrefix is the message prefix of the task's schema-change events; EventsTable is
	// where a source older than 14 writes them instead: its inserts are the events, in their
	// place in the stream.
	EventsPrefix string
	EventsTable  spec.QName
	// SilenceLimit is how long the source may leave a status that asks for a reply unanswered
	// (Silent).
	SilenceLimit time.Duration
	// Throttle paces the bytes received; nil = unlimited.
	Throttle *throttle.Limiter
	Log      *zap.Logger
}

// Reader reads a slot's pgoutput stream on a replication connection: the replication protocol
// (keepalives, WAL data, protocol 2's streamed transactions, spooled until their commit), and the
// decoding of its messages, which it hands to a Sink.
type Reader struct {
	opts     ReaderOptions
	repl     *pgconn.PgConn
	sink     Sink
	timeline int32
	proto    int // pgoutput protocol version
	rows     rowDecoder
	// eventsRel is the relation ID of EventsTable, once described.
	eventsRel uint32

	inTx      bool // between Begin and Commit
	skipTx    bool // the sink skips the current transaction
	inStream  bool // between StreamStart and StreamStop
	streamXid uint32
	spools    map[uint32]*spool // streamed transactions waiting for their commit or abort

	readDeadline time.Time // set on the connection
	replyDue     time.Time // the source must have answered a reply request by then; zero: answered
}

// StartReader checks that the source behind repl still holds what the destination applied (its
// timeline history, its WAL end) and starts replication from opts.From into sink.
func StartReader(ctx context.Context, repl *pgconn.PgConn, opts ReaderOptions, sink Sink) (*Reader, error) {
	if opts.SilenceLimit == 0 {
		opts.SilenceLimit = 2 * time.Minute
	}
	if opts.SpoolDir == "" {
		opts.SpoolDir = os.Getenv("SKEIN_SPOOL_DIR")
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	ident, err := pglogrepl.IdentifySystem(ctx, repl)
	if err != nil {
		return nil, fmt.Errorf("identify the source: %w", err)
	}
	if followed, err := CheckTimeline(ctx, repl, opts.From, opts.Timeline, ident.Timeline); err != nil {
		return nil, err
	} else if followed {
		opts.Log.Warn("the source failed over or was restored; every change the destination applied is in its history: the stream goes on",
			zap.Int32("from_timeline", opts.Timeline), zap.Int32("to_timeline", ident.Timeline), zap.Stringer("applied", opts.From))
	}
	if opts.From > ident.XLogPos {
		return nil, errclass.Permanent(fmt.Errorf("the destination has applied the source's changes up to %s but the source's WAL ends at %s: "+
			"this is not the server the task streamed from (a failover to a server that was behind, or a restore); "+
			"the change stream cannot continue: release the task and start it again", opts.From, ident.XLogPos))
	}
	// PostgreSQL 14+ streams large transactions while they run (protocol 2) and forwards the
	// logical messages Skein emits into the WAL.
	r := &Reader{opts: opts, repl: repl, sink: sink, timeline: ident.Timeline, proto: 1, spools: map[uint32]*spool{}}
	args := []string{"proto_version '1'"}
	if major := serverMajor(repl); major >= 14 && !opts.DisableStreaming {
		r.proto = 2
		args = []string{"proto_version '2'", "streaming 'on'", "messages 'true'"}
	}
	args = append(args, fmt.Sprintf("publication_names '%s'", opts.Publication))
	// The walsender of a stream that just ended (a restart) may hold the slot a moment longer.
	for wait := time.Now().Add(10 * time.Second); ; {
		err = pglogrepl.StartReplication(ctx, repl, opts.Slot, opts.From, pglogrepl.StartReplicationOptions{PluginArgs: args})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(wait) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42704" {
			return nil, errclass.Permanent(fmt.Errorf("replication slot %s no longer exists on the source: the change stream is lost; release the task and start it again: %w", opts.Slot, err))
		}
		return nil, SlotLost(opts.Slot, fmt.Errorf("start replication from slot %s at %s: %w", opts.Slot, opts.From, err))
	}
	return r, nil
}

// Timeline is the source's timeline.
func (r *Reader) Timeline() int32 { return r.timeline }

// Protocol is the pgoutput protocol version in use.
func (r *Reader) Protocol() int { return r.proto }

// Busy reports whether a source transaction is being received or waits in the spool for its
// commit.
func (r *Reader) Busy() bool { return r.inTx || r.inStream || len(r.spools) > 0 }

// Close removes the spooled transactions.
func (r *Reader) Close() {
	for xid, sp := range r.spools {
		sp.close()
		delete(r.spools, xid)
	}
}

// Interrupt makes a Receive waiting when ctx ends return at once; stop undoes it.
func (r *Reader) Interrupt(ctx context.Context) (stop func()) {
	after := context.AfterFunc(ctx, func() { _ = r.repl.Conn().SetReadDeadline(time.Unix(1, 0)) })
	return func() {
		after()
		_ = r.repl.Conn().SetReadDeadline(time.Time{})
	}
}

// Receive reads the next message from the source, waiting until deadline at most, and hands what
// it carries to the sink. A timeout is returned as it is (pgconn.Timeout), and so is any error
// once ctx has ended. The deadline is set on the connection itself, not through a context: a
// context per message costs a goroutine handoff and a timer, which showed as a sixth of the
// apply's CPU time; ctx interrupts a read through the same deadline (Interrupt).
func (r *Reader) Receive(ctx context.Context, deadline time.Time) error {
	if !deadline.Equal(r.readDeadline) {
		if err := r.repl.Conn().SetReadDeadline(deadline); err != nil {
			return SlotLost(r.opts.Slot, fmt.Errorf("receive from slot %s: %w", r.opts.Slot, err))
		}
		r.readDeadline = deadline
	}
	if err := ctx.Err(); err != nil {
		// Cancelled between the caller's check and the deadline just set, which may have
		// replaced the one the cancellation set: do not wait for the new one.
		return err
	}
	raw, err := r.repl.ReceiveMessage(context.Background())
	if err != nil {
		if pgconn.Timeout(err) || ctx.Err() != nil {
			return err
		}
		return SlotLost(r.opts.Slot, fmt.Errorf("receive from slot %s: %w", r.opts.Slot, err))
	}
	r.replyDue = time.Time{} // the source answers
	switch msg := raw.(type) {
	case *pgproto3.ErrorResponse:
		return fmt.Errorf("slot %s: %w", r.opts.Slot, pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyData:
		return r.copyData(ctx, msg.Data)
	}
	return nil
}

// Silent reports that the source has not answered a status that asked for a reply for
// SilenceLimit: a network that drops everything without a reset leaves the connection open and
// silent.
func (r *Reader) Silent() error {
	if r.replyDue.IsZero() || time.Now().Before(r.replyDue) {
		return nil
	}
	return fmt.Errorf("slot %s: the source has not answered for %s (the network to it is down or stalled): %w",
		r.opts.Slot, r.opts.SilenceLimit, os.ErrDeadlineExceeded)
}

// SendStatus tells the source that everything before flushed is applied, and asks it to answer.
func (r *Reader) SendStatus(ctx context.Context, flushed pglogrepl.LSN) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: flushed,
		WALFlushPosition: flushed,
		WALApplyPosition: flushed,
		ReplyRequested:   true,
	})
	if r.replyDue.IsZero() {
		r.replyDue = time.Now().Add(r.opts.SilenceLimit)
	}
	if err != nil {
		return fmt.Errorf("send standby status to slot %s: %w", r.opts.Slot, err)
	}
	return nil
}

func (r *Reader) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		r.sink.WALEnd(ka.ServerWALEnd, ka.ReplyRequested)
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse WAL data: %w", err)
		}
		if err := r.wal(ctx, xld.WALData); err != nil {
			return err
		}
		r.sink.WALEnd(xld.ServerWALEnd, false)
	}
	return nil
}

// wal handles one pgoutput message.
func (r *Reader) wal(ctx context.Context, data []byte) error {
	if err := r.opts.Throttle.Wait(ctx, 0, len(data)); err != nil {
		return err
	}
	if isRowMessage(data) && !r.inStream {
		if r.skipTx {
			return nil
		}
		if r.eventsRel != 0 && data[0] == 'I' && len(data) > 5 && binary.BigEndian.Uint32(data[1:]) == r.eventsRel {
			return r.eventRow(data)
		}
		msg, err := r.rows.decode(data[0], data[1:])
		if err != nil {
			return fmt.Errorf("decode pgoutput message: %w", err)
		}
		return r.sink.Row(msg)
	}
	if r.proto == 1 {
		msg, err := pglogrepl.Parse(data)
		if err != nil {
			return fmt.Errorf("decode pgoutput message: %w", err)
		}
		return r.deliver(msg, false)
	}
	msg, err := pglogrepl.ParseV2(data, r.inStream)
	if err != nil {
		return fmt.Errorf("decode pgoutput message: %w", err)
	}
	switch m := msg.(type) {
	case *pglogrepl.StreamStartMessageV2:
		r.inStream, r.streamXid = true, m.Xid
		if sp, ok := r.spools[m.Xid]; ok && m.FirstSegment == 1 {
			sp.close() // sent again from its start
			delete(r.spools, m.Xid)
		}
		if _, ok := r.spools[m.Xid]; !ok {
			sp, err := newSpool(r.opts.SpoolDir, m.Xid)
			if err != nil {
				return err
			}
			r.spools[m.Xid] = sp
		}
		return nil
	case *pglogrepl.StreamStopMessageV2:
		r.inStream = false
		return nil
	case *pglogrepl.StreamAbortMessageV2:
		sp, ok := r.spools[m.Xid]
		switch {
		case !ok:
			return nil
		case m.SubXid == m.Xid || m.SubXid == 0:
			sp.close()
			delete(r.spools, m.Xid)
			return nil
		default:
			return sp.abortSub(m.SubXid)
		}
	case *pglogrepl.StreamCommitMessageV2:
		return r.replaySpool(m)
	}
	if r.inStream {
		sp := r.spools[r.streamXid]
		if sp == nil {
			return fmt.Errorf("streamed change of transaction %d outside a stream", r.streamXid)
		}
		_, xid := unwrapV2(msg)
		if xid == 0 {
			xid = r.streamXid
		}
		return sp.add(xid, data)
	}
	inner, _ := unwrapV2(msg)
	return r.deliver(inner, false)
}

// deliver hands one decoded protocol 1 message (not a row) to the sink.
func (r *Reader) deliver(msg pglogrepl.Message, streamed bool) error {
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		r.inTx = true
		skip, err := r.sink.Begin(m, streamed)
		r.skipTx = skip
		return err
	case *pglogrepl.CommitMessage:
		r.inTx, r.skipTx = false, false
		return r.sink.Commit(m)
	case *pglogrepl.RelationMessage:
		if t := r.opts.EventsTable; t.Name != "" && m.Namespace == t.Schema && m.RelationName == t.Name {
			r.eventsRel = m.RelationID
			return nil // not a table of the task
		}
		return r.sink.Relation(m)
	case *pglogrepl.InsertMessage, *pglogrepl.UpdateMessage, *pglogrepl.DeleteMessage:
		if r.skipTx {
			return nil
		}
		return r.sink.Row(m)
	case *pglogrepl.TruncateMessage:
		if r.skipTx {
			return nil
		}
		return r.sink.Change(m)
	case *pglogrepl.LogicalDecodingMessage:
		if r.skipTx || r.opts.EventsPrefix == "" || !m.Transactional || m.Prefix != r.opts.EventsPrefix {
			return nil
		}
		return r.sink.Change(m)
	}
	return nil
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

// replaySpool hands a streamed transaction to the sink at its commit, exactly as if it had been
// sent whole: begin, its messages in order, commit.
func (r *Reader) replaySpool(m *pglogrepl.StreamCommitMessageV2) error {
	sp, ok := r.spools[m.Xid]
	if !ok {
		return nil
	}
	defer func() {
		sp.close()
		delete(r.spools, m.Xid)
	}()
	if err := r.deliver(&pglogrepl.BeginMessage{FinalLSN: m.CommitLSN, CommitTime: m.CommitTime, Xid: m.Xid}, true); err != nil {
		return err
	}
	if !r.skipTx {
		r.opts.Log.Info("applying streamed transaction", zap.Uint32("xid", m.Xid),
			zap.Int64("messages", sp.messages), zap.Int64("spooled_bytes", sp.size), zap.Stringer("commit_lsn", m.CommitLSN))
	}
	// Applied before (skipped): only its relation descriptions count (pgoutput sends each once
	// per session, and not again for the transactions after this one).
	err := sp.replay(func(data []byte) error {
		if r.skipTx && (len(data) == 0 || data[0] != 'R') {
			return nil
		}
		if isRowMessage(data) && len(data) > 5 {
			msg, err := r.rows.decode(data[0], data[5:]) // after the transaction id
			if err != nil {
				return fmt.Errorf("decode spooled message of transaction %d: %w", m.Xid, err)
			}
			return r.sink.Row(msg)
		}
		msg, err := pglogrepl.ParseV2(data, true)
		if err != nil {
			return fmt.Errorf("decode spooled message of transaction %d: %w", m.Xid, err)
		}
		inner, _ := unwrapV2(msg)
		return r.deliver(inner, true)
	})
	if err != nil {
		return err
	}
	return r.deliver(&pglogrepl.CommitMessage{CommitLSN: m.CommitLSN, TransactionEndLSN: m.TransactionEndLSN, CommitTime: m.CommitTime}, true)
}

// eventRow hands a row of EventsTable (an insert: type byte first) to the sink as the
// schema-change event it holds, as the logical message a source of 14 or newer sends instead.
func (r *Reader) eventRow(raw []byte) error {
	msg, err := pglogrepl.Parse(raw)
	if err != nil {
		return fmt.Errorf("decode a schema-change event row: %w", err)
	}
	ins, ok := msg.(*pglogrepl.InsertMessage)
	if !ok || ins.Tuple == nil || len(ins.Tuple.Columns) != 1 || ins.Tuple.Columns[0].DataType != pglogrepl.TupleDataTypeText {
		return fmt.Errorf("a schema-change event row of %s is not one text value", r.opts.EventsTable)
	}
	return r.sink.Change(&pglogrepl.LogicalDecodingMessage{Transactional: true, Prefix: r.opts.EventsPrefix, Content: ins.Tuple.Columns[0].Data})
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

// SlotLost marks err permanent, with the reason, when the source says the slot can no longer give
// its changes: invalidated (it kept more WAL than max_slot_wal_keep_size allows) or its WAL
// removed. Nothing can bring those changes back.
func SlotLost(slot string, err error) error {
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

// Deadline is the read deadline set on the connection now.
func (r *Reader) Deadline() time.Time { return r.readDeadline }

// Waiting reports whether bytes wait on the replication socket, and whether it could be asked
// (dbconn.Waiting).
func (r *Reader) Waiting() (waiting, peekable bool) { return dbconn.Waiting(r.repl.Conn()) }
