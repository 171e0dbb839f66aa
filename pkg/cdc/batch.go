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

// Limits of one batch of inserts: it is sent with COPY when it reaches either, when another kind
// of change or another table comes, and before every destination commit.
const (
	batchRows  = 5000
	batchBytes = 8 << 20
)

// insertBatch is a run of inserts into one table, in COPY text format.
type insertBatch struct {
	relID    uint32
	tm       spec.TableMap
	copySQL  string
	ncols    int
	buf      bytes.Buffer
	rows     int
	firstKey string
}

// batchInsert adds an insert to the current run, sending the run first when the table or the
// column list changes.
func (a *applier) batchInsert(ctx context.Context, m *pglogrepl.InsertMessage, rel *pglogrepl.RelationMessage, tm spec.TableMap) error {
	if a.batch != nil && (a.batch.relID != m.RelationID || a.batch.ncols != len(m.Tuple.Columns)) {
		if err := a.flush(ctx); err != nil {
			return err
		}
	}
	if a.batch == nil {
		cols := make([]string, 0, len(m.Tuple.Columns))
		for i := range m.Tuple.Columns {
			cols = append(cols, quote(tm.DestColumn(rel.Columns[i].Name)))
		}
		a.batch = &insertBatch{relID: m.RelationID, tm: tm, ncols: len(m.Tuple.Columns), firstKey: keyText(rel, m.Tuple),
			copySQL: fmt.Sprintf("COPY %s (%s) FROM STDIN", tm.Dest.Quoted(), strings.Join(cols, ", "))}
	}
	appendCopyRow(&a.batch.buf, m.Tuple)
	a.batch.rows++
	if a.batch.rows >= batchRows || a.batch.buf.Len() >= batchBytes {
		return a.flush(ctx)
	}
	return nil
}

// flush sends the current run of inserts, if any.
func (a *applier) flush(ctx context.Context) error {
	b := a.batch
	if b == nil {
		return nil
	}
	a.batch = nil
	if _, err := a.dest.PgConn().CopyFrom(ctx, &b.buf, b.copySQL); err != nil {
		return fmt.Errorf("insert %d rows into %s (the first with key %s): %w (statement: %s)", b.rows, b.tm.Dest, b.firstKey, withDetail(err), b.copySQL)
	}
	a.counts.Inserts += int64(b.rows)
	return nil
}

// discard drops the current run (its destination transaction is rolled back).
func (a *applier) discard() { a.batch = nil }

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
