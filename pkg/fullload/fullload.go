// Package fullload copies tables from the source to the destination in chunks. Each chunk reads
// inside the task's exported snapshot and streams COPY TO STDOUT into COPY FROM STDIN without
// holding the data in memory; its chunk-done row is written in the same destination transaction,
// so a retried chunk is a no-op.
package fullload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
)

// Chunk is api.Chunk.
type Chunk = api.Chunk

// ErrStaleChunk is returned for a chunk of a load generation older than its table's: the table
// was reset after the chunk was planned (an activity that outlived the snapshot it read).
var ErrStaleChunk = errors.New("the table's load started over after this chunk was planned")

// TableKey names a table in chunk ids and reset markers: both parts quoted, so that "s"."a.b"
// and "s.a"."b" (or a table named t#1) never share ids or prefixes.
func TableKey(q spec.QName) string { return q.Quoted() }

// Plan cuts a table into chunks of about chunkMB. Tables are split by ctid block ranges, which
// PostgreSQL 14+ scans directly (TID range scan); older servers get one chunk per table.
func Plan(t *catalog.Table, tm spec.TableMap, chunkMB int, serverVersionNum int) []Chunk {
	perChunk := int64(chunkMB) * 1024 * 1024 / max(t.BlockSize, 1)
	if serverVersionNum < 140000 || t.Blocks <= perChunk || perChunk < 1 {
		return []Chunk{{ID: TableKey(tm.Source) + "#0", Table: tm, RowsEstimate: t.RowsEstimate}}
	}
	n := (t.Blocks + perChunk - 1) / perChunk
	chunks := make([]Chunk, 0, n)
	for i := int64(0); i < n; i++ {
		c := Chunk{
			ID:           fmt.Sprintf("%s#%d", TableKey(tm.Source), i),
			Table:        tm,
			FirstBlock:   i * perChunk,
			EndBlock:     (i + 1) * perChunk,
			RowsEstimate: t.RowsEstimate / n,
		}
		if i == n-1 {
			c.EndBlock = 0 // the last chunk takes whatever the table grew by
		}
		chunks = append(chunks, c)
	}
	return chunks
}

// MaxChunks bounds the chunks of one load: each is an activity in the task's history (three
// events), so a very large database is cut into larger chunks rather than into more of them.
const MaxChunks = 2000

// PlanAll plans every table (defs[i] is the definition of tables[i]) with chunks of about chunkMB,
// or larger ones if that would make more than MaxChunks in all.
func PlanAll(defs []*catalog.Table, tables []spec.TableMap, chunkMB int, serverVersionNum int) [][]Chunk {
	for {
		plans := make([][]Chunk, len(defs))
		total := 0
		for i, t := range defs {
			plans[i] = Plan(t, tables[i], chunkMB, serverVersionNum)
			total += len(plans[i])
		}
		if total <= MaxChunks || total <= len(defs) {
			return plans
		}
		chunkMB *= (total + MaxChunks - 1) / MaxChunks
	}
}

// Result is api.Result.
type Result = api.Result

// Copier copies chunks between two open connections.
type Copier struct {
	Task     string
	Source   *pgx.Conn
	Dest     *pgx.Conn
	Snapshot string // exported snapshot to read in; "" reads the current data
	// Progress, if set, is called with the bytes streamed so far while a chunk copies.
	Progress func(bytes int64)
	// KeepExisting (conflict_mode: ignore) keeps rows already on the destination: the chunk lands
	// in a staging table and moves over with ON CONFLICT DO NOTHING.
	KeepExisting bool
	// Throttle paces the stream (nil = unlimited). With a row limit the chunk is copied in text
	// format, whose rows end in a newline and can be counted on the fly.
	Throttle *throttle.Limiter
	// SourceInSnapshot: Source is in a transaction of the caller's that reads in Snapshot with
	// row_security off (SourceSession), shared by the chunks copied over it. Otherwise each chunk
	// opens one of its own.
	SourceInSnapshot bool
}

// SourceSession makes src's open transaction (catalog.BeginRead's, in the snapshot the chunks
// are read in) one that chunks can be copied in (Copier.SourceInSnapshot): the session's own
// search_path again (a row filter names what it names as the user wrote it) and row level
// security off, as each chunk's own transaction has.
func SourceSession(ctx context.Context, src pgx.Tx) error {
	if _, err := src.Exec(ctx, "SET LOCAL search_path TO DEFAULT; SET LOCAL row_security = off"); err != nil {
		return fmt.Errorf("prepare the source session for copies: %w", err)
	}
	return nil
}

// CopyChunk copies one chunk of table t (the source definition) to the destination.
func (c *Copier) CopyChunk(ctx context.Context, t *catalog.Table, ch Chunk) (Result, error) {
	// A small table's chunk copies in a few milliseconds: round trips are most of its time, so
	// the destination's statements before the rows go in one pipeline, and the source's
	// transaction is the caller's when it shares one (SourceInSnapshot).
	dstTx, err := c.Dest.Begin(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("copy %s: begin on destination: %w", ch.ID, err)
	}
	defer dstTx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	// Row level security that applies to the account fails the copy instead of filtering it.
	// The table's lock first, then its generation: a Reset (which truncates) either waits for
	// this transaction to end and then empties the table, or has committed and its generation is
	// seen here. A chunk recorded as done (by an earlier attempt) is not copied again.
	var done bool
	var doneRows, doneBytes int64
	var gen int
	prelude := &pgx.Batch{}
	prelude.Queue("SET LOCAL row_security = off")
	prelude.Queue("LOCK TABLE ONLY " + ch.Table.Dest.Quoted() + " IN ROW EXCLUSIVE MODE")
	bookkeeping.QueueChunkDone(prelude, c.Task, ch.ID, func(ok bool, rows, bytes int64) { done, doneRows, doneBytes = ok, rows, bytes })
	bookkeeping.QueueLoadGeneration(prelude, c.Task, TableKey(ch.Table.Source), func(g int) { gen = g })
	if err := dstTx.SendBatch(ctx, prelude).Close(); err != nil {
		return Result{}, fmt.Errorf("copy %s: lock %s and read its state: %w", ch.ID, ch.Table.Dest, err)
	}
	if done {
		return Result{Rows: doneRows, Bytes: doneBytes, Skipped: true}, nil
	}
	if gen > ch.Generation {
		return Result{}, fmt.Errorf("copy %s (load generation %d, the table's is %d): %w", ch.ID, ch.Generation, gen, ErrStaleChunk)
	}
	if !c.SourceInSnapshot {
		srcTx, err := c.Source.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return Result{}, fmt.Errorf("copy %s: begin on source: %w", ch.ID, err)
		}
		defer srcTx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
		if err := catalog.ImportSnapshot(ctx, srcTx, c.Snapshot); err != nil {
			return Result{}, fmt.Errorf("copy %s: %w", ch.ID, err)
		}
		// As pg_dump: row level security that applies to the account fails the read instead of
		// leaving rows out.
		if _, err := srcTx.Exec(ctx, "SET LOCAL row_security = off"); err != nil {
			return Result{}, fmt.Errorf("copy %s: %w", ch.ID, err)
		}
	}

	cols := t.CopyColumns()
	srcCols := make([]string, len(cols))
	dstCols := make([]string, len(cols))
	for i, col := range cols {
		srcCols[i] = pgx.Identifier{col.Name}.Sanitize()
		dstCols[i] = pgx.Identifier{ch.Table.DestColumn(col.Name)}.Sanitize()
	}
	// Text unless every type is built in (their binary forms are the same on both sides) and no
	// column is mapped to another type (the destination reads the source's text form as it).
	format := "text"
	if t.AllBuiltinTypes() && !c.Throttle.CountsRows() && len(ch.Table.Types) == 0 {
		format = "binary"
	}
	// ONLY: the rows of tables that inherit from this one (partitions too) are theirs to copy.
	copyOut := fmt.Sprintf("COPY (SELECT %s FROM ONLY %s%s) TO STDOUT (FORMAT %s)",
		strings.Join(srcCols, ", "), ch.Table.Source.Quoted(), ctidFilter(ch), format)
	target := ch.Table.Dest.Quoted()
	if c.KeepExisting {
		target = `"skein_stage"`
		if _, err := dstTx.Exec(ctx, fmt.Sprintf(`CREATE TEMPORARY TABLE "skein_stage" ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA`,
			strings.Join(dstCols, ", "), ch.Table.Dest.Quoted())); err != nil {
			return Result{}, fmt.Errorf("copy %s: staging table: %w", ch.ID, err)
		}
	}
	copyIn := fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT %s)", target, strings.Join(dstCols, ", "), format)
	if len(dstCols) == 0 {
		// A table without columns still has rows: COPY takes no empty column list.
		copyIn = fmt.Sprintf("COPY %s FROM STDIN (FORMAT %s)", target, format)
	}

	var counter *countingReader
	tag, atDestination, err := Pipe(ctx, c.Source.PgConn(), c.Dest.PgConn(), copyOut, copyIn, func(r io.Reader) io.Reader {
		counter = &countingReader{ctx: ctx, r: r, progress: c.Progress, throttle: c.Throttle}
		return counter
	})
	switch {
	case err != nil && atDestination:
		return Result{}, fmt.Errorf("copy %s: write to destination %s: %w", ch.ID, ch.Table.Dest, err)
	case err != nil:
		return Result{}, fmt.Errorf("copy %s: read from source: %w", ch.ID, err)
	}
	res := Result{Rows: tag.RowsAffected(), Bytes: counter.n.Load()}
	if c.KeepExisting {
		cols := strings.Join(dstCols, ", ")
		tag, err := dstTx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM "skein_stage" ON CONFLICT DO NOTHING`,
			ch.Table.Dest.Quoted(), cols, cols))
		if err != nil {
			return Result{}, fmt.Errorf("copy %s: move staged rows into %s: %w", ch.ID, ch.Table.Dest, err)
		}
		res.Rows = tag.RowsAffected()
	}
	if err := bookkeeping.MarkChunkDone(ctx, dstTx, c.Task, ch.ID, res.Rows, res.Bytes); err != nil {
		return Result{}, err
	}
	if err := dstTx.Commit(ctx); err != nil {
		return Result{}, fmt.Errorf("copy %s: commit: %w", ch.ID, err)
	}
	return res, nil
}

// Pipe streams the rows of copyOut (COPY ... TO STDOUT, run on src) into copyIn (COPY ... FROM
// STDIN, run on dst) without holding them in memory; wrap, if set, sees the stream on its way.
// It returns the destination's command tag and, on error, whether the destination failed.
func Pipe(ctx context.Context, src, dst *pgconn.PgConn, copyOut, copyIn string, wrap func(io.Reader) io.Reader) (pgconn.CommandTag, bool, error) {
	pr, pw := io.Pipe()
	outErr := make(chan error, 1)
	go func() {
		// The source sends a message per row: handing them over one by one would cost the
		// destination a message (and a system call) per row too. Hand over 256 kB at a time.
		bw := bufio.NewWriterSize(pw, 256<<10)
		_, err := src.CopyTo(ctx, bw, copyOut)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		outErr <- err
	}()
	var r io.Reader = pr
	if wrap != nil {
		r = wrap(pr)
	}
	tag, inErr := dst.CopyFrom(ctx, r, copyIn)
	pr.CloseWithError(errDestinationStopped)
	err, atDestination := copyError(<-outErr, inErr)
	return tag, atDestination, err
}

// errDestinationStopped is what the source half of a chunk copy gets when the destination half
// ended first: the destination's own error (or success) is the copy's result, never this.
var errDestinationStopped = errors.New("destination stopped reading")

// copyError decides which half of a chunk copy failed it. The two halves end in either order:
// when the destination refuses a row mid-stream, the source half, still writing, fails with
// errDestinationStopped, which must not hide the destination's error (its SQLSTATE decides the
// retry class); when the source fails, the destination half fails too (pgconn sends CopyFail
// with the source's error), and the source's error is the cause. So: a source error of its own
// wins, then the destination's error, and errDestinationStopped only if nothing else is known.
func copyError(srcErr, destErr error) (err error, atDestination bool) {
	switch {
	case srcErr != nil && !errors.Is(srcErr, errDestinationStopped):
		return srcErr, false
	case destErr != nil:
		return destErr, true
	}
	return srcErr, false
}

// Reset empties the destination tables of tables (their leaf or ordinary tables; a partitioned
// table holds no rows itself) and deletes the task's chunk-done rows of them, in one transaction.
// generations[i] (when given) is tables[i]'s new load generation: chunks of older ones that are
// still running will not commit.
func Reset(ctx context.Context, dest *pgx.Conn, task string, tables []spec.TableMap, generations []int) error {
	// A snapshot lost before the schema step created anything leaves no bookkeeping yet.
	if err := bookkeeping.Ensure(ctx, dest); err != nil {
		return fmt.Errorf("reset load: %w", err)
	}
	tx, err := dest.Begin(ctx)
	if err != nil {
		return fmt.Errorf("reset load: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	for i, t := range tables {
		var kind string
		err := tx.QueryRow(ctx, `SELECT c.relkind::pg_catalog.text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`,
			t.Dest.Quoted()).Scan(&kind)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			kind = "" // not created yet (the snapshot was lost before the schema step): nothing to empty
		case err != nil:
			return fmt.Errorf("reset load of %s: find %s: %w", t.Source, t.Dest, err)
		}
		if kind == "r" {
			if _, err := tx.Exec(ctx, "TRUNCATE ONLY "+t.Dest.Quoted()); err != nil {
				return fmt.Errorf("reset load of %s: truncate %s: %w", t.Source, t.Dest, err)
			}
		}
		if err := bookkeeping.ForgetChunks(ctx, tx, task, TableKey(t.Source)+"#"); err != nil {
			return err
		}
		// Chunks planned before the ids were quoted (a load in flight across an upgrade).
		if err := bookkeeping.ForgetChunks(ctx, tx, task, t.Source.String()+"#"); err != nil {
			return err
		}
		if i < len(generations) && generations[i] > 0 {
			if err := bookkeeping.MarkReset(ctx, tx, task, TableKey(t.Source), generations[i]); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("reset load: commit: %w", err)
	}
	return nil
}

// ctidFilter selects the chunk's rows: its block range and the table's row filter.
func ctidFilter(ch Chunk) string {
	var conds []string
	if ch.FirstBlock > 0 || ch.EndBlock > 0 {
		conds = append(conds, fmt.Sprintf("ctid >= '(%d,0)'::pg_catalog.tid", ch.FirstBlock))
	}
	if ch.EndBlock > 0 {
		conds = append(conds, fmt.Sprintf("ctid < '(%d,0)'::pg_catalog.tid", ch.EndBlock))
	}
	if w := ch.Table.WhereSQL(); w != "" {
		conds = append(conds, w)
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// Throttled paces the COPY text stream r (rows and bytes) by lim; nil means unlimited.
func Throttled(ctx context.Context, r io.Reader, lim *throttle.Limiter) io.Reader {
	if lim == nil {
		return r
	}
	return &countingReader{ctx: ctx, r: r, throttle: lim}
}

type countingReader struct {
	ctx      context.Context
	r        io.Reader
	n        atomic.Int64
	progress func(int64)
	last     int64
	throttle *throttle.Limiter
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.throttle != nil && n > 0 {
		rows := 0
		if c.throttle.CountsRows() {
			rows = bytes.Count(p[:n], []byte{'\n'})
		}
		if werr := c.throttle.Wait(c.ctx, rows, n); werr != nil {
			return n, werr
		}
	}
	total := c.n.Add(int64(n))
	if c.progress != nil && total-c.last >= 8<<20 {
		c.last = total
		c.progress(total)
	}
	return n, err
}
