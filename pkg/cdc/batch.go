package cdc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/spec"
)

// Pending changes of one destination transaction: inserts gather per table as COPY rows, updates
// and deletes of all tables in one pipeline (up to pipeStatements per round trip). Order is kept
// per table, the only order that matters inside one destination transaction (the destination runs
// with session_replication_role = replica: no triggers, no foreign-key checks): a table's inserts
// are sent before one of its updates or deletes is queued, and its pipelined statements before
// one of its inserts is gathered. Everything is sent before the commit. A table's run is sent at
// batchRows rows, all runs when they hold batchBytes together. Updates and deletes by key gather
// in keyed batches (keyed.go), which go into the same pipeline.
//
// A run of at most smallRun inserts and smallBytes of values goes into the pipeline as single-row
// INSERTs instead of a COPY, which costs two round trips of its own (a larger run is not held twice
// while it gathers: a value of a gigabyte stays one COPY). The destination transaction's BEGIN waits for the first
// thing sent (see beginPending), and its commit sends what is left, the progress row and COMMIT in
// one pipeline: a small source transaction costs one round trip.
const (
	batchRows      = 5000
	batchBytes     = 8 << 20
	pipeStatements = 250
	smallRun       = 8
	smallBytes     = 64 << 10
)

// Operations of pipelined statements, as error messages name them. The last three are the
// transaction's own statements: queued.key holds the commit LSN they are sent for.
const (
	opUpdate   = "update"
	opDelete   = "delete from"
	opInsert   = "insert into"
	opBegin    = "begin"
	opProgress = "record the applied LSN"
	opCommit   = "commit"
	opWAL      = "read the WAL position after the commit"
)

// queued is an update or delete (or a keyed batch of them) waiting in the pipeline, for its result.
type queued struct {
	rel   uint32 // relation id
	op    string // opUpdate or opDelete
	table spec.QName
	key   string
	sql   string
	rows  int           // changes it applies
	guard identityGuard // the identity columns its RETURNING checks
}

// failed names the statement, its table and key in err.
func (q queued) failed(err error) error {
	switch q.op {
	case opBegin, opProgress, opCommit, opWAL:
		return fmt.Errorf("destination: %s (of the transactions through %s): %w", q.op, q.key, withDetail(err))
	}
	if q.rows > 1 {
		return fmt.Errorf("%s %s, one of %d rows with keys %s: %w (statement: %s)", q.op, q.table, q.rows, q.key, withDetail(err), q.sql)
	}
	return fmt.Errorf("%s %s key %s: %w (statement: %s)", q.op, q.table, q.key, withDetail(err), q.sql)
}

// queue adds an update or delete to the pipeline (after the current run of inserts).
func (a *applier) queue(ctx context.Context, sql string, params [][]byte, q queued) error {
	if err := a.flushRun(ctx, q.rel); err != nil {
		return err
	}
	if err := a.sendBatch(ctx, q.rel); err != nil {
		return err
	}
	name, err := a.prepared(ctx, sql)
	if err != nil {
		return fmt.Errorf("%s %s: prepare: %w (statement: %s)", q.op, q.table, err, sql)
	}
	q.rows = 1
	return a.pipeline(ctx, name, params, nil, q)
}

// pipeline adds a prepared statement to the pipeline and sends the pipeline once it holds
// pipeStatements changes. formats: nil for text parameters, else one per parameter.
func (a *applier) pipeline(ctx context.Context, name string, params [][]byte, formats []int16, q queued) error {
	a.openPipe()
	a.pipe.ExecPrepared(name, params, formats, nil)
	a.piped = append(a.piped, q)
	a.pipeTables[q.rel] = true
	a.pipeRows += q.rows
	if a.pipeRows >= pipeStatements {
		return a.flushPipe(ctx)
	}
	return nil
}

// A destination transaction's own statements: its BEGIN, its COMMIT and the read of the WAL
// positions after it. They are prepared once per session, as the changes' statements are: sent
// as unnamed statements, the destination parsed and planned them for every transaction (the WAL
// read alone cost a third of the destination's CPU time of a one-row transaction). They depend on
// no table, so a schema change keeps them (schema_change.go deallocates a.stmts only).
const (
	stmtBegin  = "skein_begin"
	stmtCommit = "skein_commit"
	stmtWAL    = "skein_wal"
)

// begin opens a destination transaction: its BEGIN is sent with the first statement (openPipe),
// or on its own before anything else (resolve). The session's first transaction prepares the
// control statements first.
func (a *applier) begin(ctx context.Context) error {
	if !a.ctlPrepared {
		if err := a.resolve(ctx); err != nil {
			return err
		}
		for name, sql := range map[string]string{stmtBegin: "BEGIN", stmtCommit: "COMMIT", stmtWAL: walPositionsSQL} {
			if _, err := a.dest.PgConn().Prepare(ctx, name, sql, nil); err != nil {
				return fmt.Errorf("destination: prepare %s: %w", name, err)
			}
		}
		a.ctlPrepared = true
	}
	a.beginPending = true
	return nil
}

// openPipe starts a pipeline if none is being filled; the first one of a destination transaction
// starts with its BEGIN.
func (a *applier) openPipe() {
	if a.pipe != nil {
		return
	}
	a.pipe = &pgconn.Batch{}
	if a.beginPending {
		a.pipeControl(stmtBegin, opBegin, a.txLSN.String())
	}
}

// pipeControl adds one of the transaction's own statements (stmtBegin, stmtCommit, stmtWAL) to the open
// pipeline; through is the commit LSN its errors name.
func (a *applier) pipeControl(name, op, through string) {
	a.pipe.ExecPrepared(name, nil, nil, nil)
	a.piped = append(a.piped, queued{op: op, key: through})
}

// flushPipe sends the pipelined statements without waiting for their results: the destination
// executes them while the next changes are decoded. The results are read (resolve) before the
// connection is used for anything else, and before every commit.
func (a *applier) flushPipe(ctx context.Context) error {
	if a.pipe == nil {
		return nil
	}
	if err := a.collect(); err != nil {
		return err
	}
	a.inflight = a.dest.PgConn().ExecBatch(ctx, a.pipe)
	a.inflightQ = a.piped
	a.pipe, a.piped, a.pipeRows = nil, nil, 0
	a.beginPending = false // it was the pipeline's first statement
	clear(a.pipeTables)
	return nil
}

// resolve makes the connection ready for a statement of its own: the destination transaction has
// begun, and the results of the statements in flight are read.
func (a *applier) resolve(ctx context.Context) error {
	if a.beginPending {
		if a.pipe != nil {
			// The pipeline being filled starts with the BEGIN: send it first.
			if err := a.flushPipe(ctx); err != nil {
				return err
			}
		} else {
			if _, err := a.dest.PgConn().ExecPrepared(ctx, stmtBegin, nil, nil, nil).Close(); err != nil {
				return fmt.Errorf("destination: begin: %w", err)
			}
			a.beginPending = false
		}
	}
	return a.collect()
}

// collect reads the results of the statements in flight: one that found no row is counted and
// logged, one that failed fails the apply with its table, key and statement.
func (a *applier) collect() error {
	if a.inflight == nil {
		return nil
	}
	piped := a.inflightQ
	results, err := a.inflight.ReadAll()
	a.inflight, a.inflightQ = nil, nil
	for i, r := range results {
		if i >= len(piped) {
			break
		}
		q := piped[i]
		if r.Err != nil {
			return q.failed(r.Err)
		}
		if q.guard.changed(r.Rows) {
			return q.guard.failed(q.op, q.table, q.key)
		}
		switch q.op {
		case opBegin, opProgress:
			continue
		case opCommit:
			if tag := r.CommandTag.String(); tag != "COMMIT" {
				return q.failed(fmt.Errorf("the destination ended the transaction with %s", tag))
			}
			continue
		case opWAL:
			if len(r.Rows) != 1 || len(r.Rows[0]) != 2 {
				return q.failed(fmt.Errorf("%d rows returned", len(r.Rows)))
			}
			insert, flushed, err := parseWAL(string(r.Rows[0][0]), string(r.Rows[0][1]))
			if err != nil {
				return q.failed(err)
			}
			a.walCommitted, a.walFlushed = max(a.walCommitted, insert), max(a.walFlushed, flushed)
			continue
		case opInsert:
			a.counts.Inserts += int64(q.rows)
			continue
		}
		if missing := int64(q.rows) - r.CommandTag.RowsAffected(); missing > 0 {
			a.counts.Missing += missing
			a.logMissing(q, missing)
		}
		if q.op == opUpdate {
			a.counts.Updates += int64(q.rows)
		} else {
			a.counts.Deletes += int64(q.rows)
		}
	}
	if err != nil && len(results) < len(piped) {
		// The server's error ends the results: it is the next statement's.
		return piped[len(results)].failed(err)
	}
	if err != nil {
		return fmt.Errorf("apply %d updates and deletes: %w", len(piped), withDetail(err))
	}
	return nil
}

// insertBatch is a run of inserts into one table, in COPY text format.
type insertBatch struct {
	relID    uint32
	tm       spec.TableMap
	copySQL  string
	ncols    int
	buf      bytes.Buffer
	rows     int
	firstKey string
	// While the run holds at most smallRun rows: each row's parameters and key, for single-row
	// INSERTs (insertSQL) in the pipeline.
	insertSQL  string
	small      []smallRow
	smallBytes int // of the values in small
}

// smallRow is one row of a small run of inserts.
type smallRow struct {
	params [][]byte
	key    string
}

// batchInsert adds an insert to its table's run.
func (a *applier) batchInsert(ctx context.Context, m *pglogrepl.InsertMessage, rel *pglogrepl.RelationMessage, tm spec.TableMap) error {
	if err := a.sendBatch(ctx, m.RelationID); err != nil {
		return err
	}
	if a.pipeTables[m.RelationID] {
		if err := a.flushPipe(ctx); err != nil {
			return err
		}
	}
	run := a.runs[m.RelationID]
	if run != nil && run.ncols != len(m.Tuple.Columns) {
		if err := a.flushRun(ctx, m.RelationID); err != nil {
			return err
		}
		run = nil
	}
	if run == nil {
		cols := make([]string, 0, len(m.Tuple.Columns))
		ph := make([]string, 0, len(m.Tuple.Columns))
		for i := range m.Tuple.Columns {
			cols = append(cols, quote(tm.DestColumn(rel.Columns[i].Name)))
			ph = append(ph, fmt.Sprintf("$%d", i+1))
		}
		list := strings.Join(cols, ", ")
		run = &insertBatch{relID: m.RelationID, tm: tm, ncols: len(m.Tuple.Columns), firstKey: keyText(rel, m.Tuple),
			copySQL: fmt.Sprintf("COPY %s (%s) FROM STDIN", tm.Dest.Quoted(), list),
			// COPY sets identity columns GENERATED ALWAYS as given; an INSERT needs the override.
			insertSQL: fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s)", tm.Dest.Quoted(), list, strings.Join(ph, ", "))}
		a.runs[m.RelationID] = run
	}
	size := 0
	for i := range m.Tuple.Columns {
		size += len(value(m.Tuple.Columns[i]))
	}
	if run.rows < smallRun && len(run.small) == run.rows && run.smallBytes+size <= smallBytes {
		run.smallBytes += size
		row := smallRow{params: make([][]byte, len(m.Tuple.Columns)), key: run.firstKey}
		if run.rows > 0 {
			row.key = keyText(rel, m.Tuple)
		}
		for i := range m.Tuple.Columns {
			if v := value(m.Tuple.Columns[i]); v != nil {
				row.params[i] = bytes.Clone(v) // the message's buffer is reused
			}
		}
		run.small = append(run.small, row)
	} else {
		run.small, run.smallBytes = nil, 0
	}
	before := run.buf.Len()
	appendCopyRow(&run.buf, m.Tuple)
	a.runBytes += run.buf.Len() - before
	run.rows++
	switch {
	case run.rows >= batchRows:
		return a.flushRun(ctx, m.RelationID)
	case a.runBytes >= batchBytes:
		return a.flushRuns(ctx)
	}
	return nil
}

// flush sends everything pending and reads every result.
func (a *applier) flush(ctx context.Context) error {
	if err := a.flushRuns(ctx); err != nil {
		return err
	}
	if err := a.sendBatches(ctx); err != nil {
		return err
	}
	if err := a.flushPipe(ctx); err != nil {
		return err
	}
	return a.resolve(ctx)
}

// flushRuns sends every table's run of inserts.
func (a *applier) flushRuns(ctx context.Context) error {
	for rel := range a.runs {
		if err := a.flushRun(ctx, rel); err != nil {
			return err
		}
	}
	return nil
}

// flushRun sends one table's run of inserts, if it has one.
func (a *applier) flushRun(ctx context.Context, rel uint32) error {
	b := a.runs[rel]
	if b == nil {
		return nil
	}
	delete(a.runs, rel)
	a.runBytes -= b.buf.Len()
	if len(b.small) == b.rows {
		name, err := a.prepared(ctx, b.insertSQL)
		if err != nil {
			return fmt.Errorf("insert into %s: prepare: %w (statement: %s)", b.tm.Dest, err, b.insertSQL)
		}
		for _, row := range b.small {
			if err := a.pipeline(ctx, name, row.params, nil, queued{rel: rel, op: opInsert, table: b.tm.Dest, key: row.key, sql: b.insertSQL, rows: 1}); err != nil {
				return err
			}
		}
		return nil
	}
	if err := a.resolve(ctx); err != nil {
		return err
	}
	if _, err := a.dest.PgConn().CopyFrom(ctx, &b.buf, b.copySQL); err != nil {
		return fmt.Errorf("insert %d rows into %s (the first with key %s): %w (statement: %s)", b.rows, b.tm.Dest, b.firstKey, withDetail(err), b.copySQL)
	}
	a.counts.Inserts += int64(b.rows)
	return nil
}

// discard drops what is pending (its destination transaction is rolled back).
func (a *applier) discard() {
	if a.inflight != nil {
		_ = a.inflight.Close() // reads and drops the results
		a.inflight, a.inflightQ = nil, nil
	}
	clear(a.runs)
	clear(a.batches)
	a.batchBytes = 0
	clear(a.pipeTables)
	a.runBytes, a.pipe, a.piped, a.pipeRows = 0, nil, nil, 0
	a.beginPending = false
}

// commit ends the destination transaction: what is pending, the progress row (progressSQL with
// its parameters), COMMIT and the read of the WAL positions after it (walCommitted, walFlushed:
// durable.go) go in one pipeline, and every result is read. through is the commit LSN of its
// last source transaction, for errors.
func (a *applier) commit(ctx context.Context, progressSQL string, progress [][]byte, through string) error {
	if err := a.flushRuns(ctx); err != nil {
		return err
	}
	if err := a.sendBatches(ctx); err != nil {
		return err
	}
	name, err := a.prepared(ctx, progressSQL)
	if err != nil {
		return fmt.Errorf("destination: prepare the progress row: %w", err)
	}
	if err := a.pipeline(ctx, name, progress, nil, queued{op: opProgress, key: through}); err != nil {
		return err
	}
	a.openPipe()
	a.pipeControl(stmtCommit, opCommit, through)
	a.pipeControl(stmtWAL, opWAL, through)
	if err := a.flushPipe(ctx); err != nil {
		return err
	}
	if err := a.collect(); err != nil {
		return err
	}
	if st := a.dest.PgConn().TxStatus(); st != 'I' {
		return fmt.Errorf("destination: the transactions through %s are not committed: the session is in state %q after COMMIT", through, st)
	}
	return nil
}

// appendCopyRow writes one row in COPY's text format: tab-separated, \N for NULL, backslash,
// tab, newline and carriage return escaped. The values are the types' own text output, which COPY
// reads back with the types' input functions, as a text parameter would be.
func appendCopyRow(buf *bytes.Buffer, t *pglogrepl.TupleData) {
	for i, c := range t.Columns {
		if i > 0 {
			buf.WriteByte('\t')
		}
		if c.DataType == pglogrepl.TupleDataTypeNull {
			buf.WriteString(`\N`)
			continue
		}
		for _, ch := range c.Data {
			switch ch {
			case '\\':
				buf.WriteString(`\\`)
			case '\t':
				buf.WriteString(`\t`)
			case '\n':
				buf.WriteString(`\n`)
			case '\r':
				buf.WriteString(`\r`)
			default:
				buf.WriteByte(ch)
			}
		}
	}
	buf.WriteByte('\n')
}

// withDetail adds the server's DETAIL (the conflicting key, for instance) to err's text.
func withDetail(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Detail != "" {
		return fmt.Errorf("%w (%s)", err, pgErr.Detail)
	}
	return err
}
