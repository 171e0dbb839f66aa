package cdc

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// The apply commits on the destination asynchronously (synchronous_commit = off on its sessions,
// as a subscription's apply worker does by default): a commit returns before its WAL is flushed,
// which saves a WAL flush (an fsync on real disks) per destination transaction. A destination
// crash may then lose the last commits, together with the progress row each carries, so the
// destination itself stays consistent and the next run starts before them. The source must not
// have been told they were applied, or it would never send them again: the stream tells it only
// positions whose destination commits are flushed (flushGate), as native apply does.

// walPositionsSQL reads, after a commit, the destination's WAL insert position (past the commit
// record) and how far its WAL is flushed.
const walPositionsSQL = `SELECT pg_catalog.pg_current_wal_insert_lsn()::pg_catalog.text, pg_catalog.pg_current_wal_flush_lsn()::pg_catalog.text`

// flushGate holds back source positions until the destination commits they depend on are
// flushed. need is the destination WAL position past every commit so far; flushed how far the
// destination's WAL is known to be flushed; marks the positions waiting, in order, each with the
// need when it was reached; confirmed the latest position that may be told to the source.
type flushGate struct {
	need, flushed pglogrepl.LSN
	marks         []flushMark
	confirmed     pglogrepl.LSN
}

// flushMark is a source position waiting for the destination's WAL to be flushed to dest.
type flushMark struct {
	dest, source pglogrepl.LSN
}

// committed records a destination commit (its WAL insert position read after it) and how far the
// destination's WAL was flushed then.
func (g *flushGate) committed(dest, flushed pglogrepl.LSN) {
	g.need = max(g.need, dest)
	g.flushedTo(flushed)
}

// reached records that everything before the source position pos is applied by the commits
// recorded so far.
func (g *flushGate) reached(pos pglogrepl.LSN) {
	switch n := len(g.marks); {
	case pos <= g.confirmed:
	case g.need <= g.flushed && n == 0:
		g.confirmed = pos
	case n > 0 && g.marks[n-1].dest == g.need:
		g.marks[n-1].source = max(g.marks[n-1].source, pos)
	default:
		g.marks = append(g.marks, flushMark{dest: g.need, source: pos})
	}
}

// flushedTo records that the destination's WAL is flushed to lsn, releasing the positions that
// waited for it.
func (g *flushGate) flushedTo(lsn pglogrepl.LSN) {
	g.flushed = max(g.flushed, lsn)
	i := 0
	for ; i < len(g.marks) && g.marks[i].dest <= g.flushed; i++ {
		g.confirmed = max(g.confirmed, g.marks[i].source)
	}
	g.marks = g.marks[i:]
}

// waiting reports whether positions wait for a flush.
func (g *flushGate) waiting() bool { return len(g.marks) > 0 }

// readWAL reads the destination's WAL insert and flush positions (walPositionsSQL).
func readWAL(ctx context.Context, conn *pgx.Conn) (insert, flushed pglogrepl.LSN, err error) {
	var i, f string
	if err := conn.QueryRow(ctx, walPositionsSQL, pgx.QueryExecModeSimpleProtocol).Scan(&i, &f); err != nil {
		return 0, 0, fmt.Errorf("destination: read its WAL position: %w", err)
	}
	return parseWAL(i, f)
}

// parseWAL parses the two positions walPositionsSQL returns.
func parseWAL(insert, flushed string) (pglogrepl.LSN, pglogrepl.LSN, error) {
	i, err := pglogrepl.ParseLSN(insert)
	if err != nil {
		return 0, 0, fmt.Errorf("destination: WAL insert position %q: %w", insert, err)
	}
	f, err := pglogrepl.ParseLSN(flushed)
	if err != nil {
		return 0, 0, fmt.Errorf("destination: WAL flush position %q: %w", flushed, err)
	}
	return i, f, nil
}

// readFlushed reads how far the destination's WAL is flushed.
func readFlushed(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	_, flushed, err := readWAL(ctx, conn)
	return flushed, err
}

// forceFlush makes the destination flush its WAL past every commit before the call and returns
// how far it is flushed: it writes the task's progress row again (progressSQL with its
// parameters, the position it holds) in a transaction that commits synchronously, which flushes
// the WAL up to its commit record. (A transaction that writes no WAL does not flush it.)
func forceFlush(ctx context.Context, conn *pgx.Conn, progressSQL string, progress [][]byte) (pglogrepl.LSN, error) {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = on"); err != nil {
			return err
		}
		args := make([]any, len(progress))
		for i, p := range progress {
			args[i] = string(p)
		}
		_, err := tx.Exec(ctx, progressSQL, args...)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("destination: flush its WAL (the progress row, committed synchronously): %w", err)
	}
	return readFlushed(ctx, conn)
}
