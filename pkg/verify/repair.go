package verify

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/fullload"
	"github.com/skein-dts/skein/pkg/throttle"
)

// Targets is what differs in one table, as a repair needs it: rows by key, whole key ranges
// where many rows of one differ, rows of a table without a key by the md5 of their text, or the
// whole table where nothing narrower is known. It holds key values: it is kept in the databases
// and the worker's memory, never in a workflow's history.
type Targets struct {
	Keys   [][]string `json:"keys,omitempty"`
	Ranges []Range    `json:"ranges,omitempty"`
	Hashes []string   `json:"hashes,omitempty"`
	Whole  bool       `json:"whole,omitempty"`
}

// Range is the key range (Lower, Upper]; a nil bound is open.
type Range struct {
	Lower []string `json:"lower,omitempty"`
	Upper []string `json:"upper,omitempty"`
}

func (t Targets) empty() bool {
	return len(t.Keys) == 0 && len(t.Ranges) == 0 && len(t.Hashes) == 0 && !t.Whole
}

// Repaired says what a repair did to one table: destination rows deleted and source rows
// written (an overwritten row counts once in each).
type Repaired struct {
	Deleted  int64 `json:"deleted"`
	Inserted int64 `json:"inserted"`
}

// keysPerStatement bounds the keys one repair statement names.
const keysPerStatement = 1000

// Repair makes the destination rows of targets what the source's are: src is a source
// transaction (the snapshot the rows are read in), dst a destination transaction that takes the
// writes (the caller commits it). Each target is deleted on the destination and the source's rows
// of it copied over, so that a row is repaired whatever happened to it: changed, lost, or left
// over. A table without a key is repaired as a multiset: per row text, the surplus copies are
// deleted and the missing ones copied.
//
// Of opts, Mapper maps user types to their destination schema (for key casts) and Throttle paces
// the rows and bytes copied.
func Repair(ctx context.Context, src, dst pgx.Tx, t Table, tg Targets, opts Options) (Repaired, error) {
	tr := newTableRun(t, opts)
	var out Repaired
	fail := func(what string, err error) (Repaired, error) {
		return out, fmt.Errorf("repair %s: %s: %w", t.Map.Source, what, err)
	}
	// Row texts (the md5 of a row without a key) as the comparison wrote them; for this
	// transaction only: dst may be the change apply's session.
	for _, q := range []pgx.Tx{src, dst} {
		if err := settings(ctx, q, "SET LOCAL "); err != nil {
			return fail("session settings", err)
		}
	}
	copyRows := func(where string) error {
		n, err := tr.copyRows(ctx, src, dst, where, opts.Throttle)
		out.Inserted += n
		return err
	}
	deleteRows := func(where string, args ...any) error {
		tag, err := dst.Exec(ctx, "DELETE FROM "+tr.dst.table+where, args...)
		out.Deleted += tag.RowsAffected()
		return err
	}
	if tg.Whole {
		if err := deleteRows(""); err != nil {
			return fail("delete the destination's rows", err)
		}
		if err := copyRows(tr.src.filterClause()); err != nil {
			return fail("copy the table", err)
		}
		return out, nil
	}
	for _, r := range tg.Ranges {
		c := chunk{lower: r.Lower, upper: r.Upper}
		dw, args := tr.dst.where(c)
		if err := deleteRows(dw, args...); err != nil {
			return fail("delete a key range", err)
		}
		if err := copyRows(tr.src.whereWith(c, literal)); err != nil {
			return fail("copy a key range", err)
		}
	}
	for from := 0; from < len(tg.Keys); from += keysPerStatement {
		keys := tg.Keys[from:min(from+keysPerStatement, len(tg.Keys))]
		dw, args := tr.dst.keyList(keys, false)
		if err := deleteRows(dw, args...); err != nil {
			return fail("delete rows by key", err)
		}
		sw, _ := tr.src.keyList(keys, true)
		if err := copyRows(sw); err != nil {
			return fail("copy rows by key", err)
		}
	}
	for _, h := range tg.Hashes {
		match := fmt.Sprintf(" WHERE pg_catalog.md5(%%s) = %s", literal(h))
		var have, want int64
		if err := dst.QueryRow(ctx, "SELECT pg_catalog.count(*) FROM "+tr.dst.table+fmt.Sprintf(match, tr.dst.rowText)).Scan(&have); err != nil {
			return fail("count a row's copies on the destination", err)
		}
		srcWhere := fmt.Sprintf(match, tr.src.rowText)
		if tr.src.filter != "" {
			srcWhere += " AND " + tr.src.filter
		}
		if err := src.QueryRow(ctx, "SELECT pg_catalog.count(*) FROM "+tr.src.table+srcWhere).Scan(&want); err != nil {
			return fail("count a row's copies on the source", err)
		}
		switch {
		case have > want:
			if err := deleteRows(fmt.Sprintf(" WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s%s LIMIT %d))", tr.dst.table, fmt.Sprintf(match, tr.dst.rowText), have-want)); err != nil {
				return fail("delete a row's surplus copies", err)
			}
		case want > have:
			if err := copyRows(fmt.Sprintf("%s LIMIT %d", srcWhere, want-have)); err != nil {
				return fail("copy a row's missing copies", err)
			}
		}
	}
	return out, nil
}

// copyRows copies the source rows that where selects into the destination table, in text
// form (the destination reads each value as its column's type).
func (t *tableRun) copyRows(ctx context.Context, src, dst pgx.Tx, where string, lim *throttle.Limiter) (int64, error) {
	var srcCols, dstCols []string
	for _, c := range t.Def.CopyColumns() {
		srcCols = append(srcCols, pgx.Identifier{c.Name}.Sanitize())
		dstCols = append(dstCols, pgx.Identifier{t.Map.DestColumn(c.Name)}.Sanitize())
	}
	copyOut := fmt.Sprintf("COPY (SELECT %s FROM %s%s) TO STDOUT", strings.Join(srcCols, ", "), t.src.table, where)
	copyIn := fmt.Sprintf("COPY %s (%s) FROM STDIN", t.Map.Dest.Quoted(), strings.Join(dstCols, ", "))
	if len(dstCols) == 0 {
		copyOut = fmt.Sprintf("COPY (SELECT FROM %s%s) TO STDOUT", t.src.table, where)
		copyIn = fmt.Sprintf("COPY %s FROM STDIN", t.Map.Dest.Quoted())
	}
	tag, atDestination, err := fullload.Pipe(ctx, src.Conn().PgConn(), dst.Conn().PgConn(), copyOut, copyIn, func(r io.Reader) io.Reader {
		return fullload.Throttled(ctx, r, lim)
	})
	switch {
	case err != nil && atDestination:
		return 0, fmt.Errorf("write to destination %s: %w", t.Map.Dest, err)
	case err != nil:
		return 0, fmt.Errorf("read from source: %w", err)
	}
	return tag.RowsAffected(), nil
}

// keyList renders "WHERE (key columns) IN (the keys)" and the row filter for one side: with
// parameters, or (for COPY, which takes none) with literals.
func (s sideSQL) keyList(keys [][]string, literals bool) (string, []any) {
	cols := make([][]string, len(s.keys))
	for _, k := range keys {
		for i, v := range k {
			cols[i] = append(cols[i], v)
		}
	}
	var args []any
	arrays := make([]string, len(s.keys))
	names := make([]string, len(s.keys))
	aliases := make([]string, len(s.keys))
	for i := range s.keys {
		if literals {
			arrays[i] = "pg_catalog.unnest(" + literal(textArray(cols[i])) + "::pg_catalog.text[])"
		} else {
			args = append(args, cols[i])
			arrays[i] = fmt.Sprintf("pg_catalog.unnest($%d::pg_catalog.text[])", i+1)
		}
		names[i] = fmt.Sprintf(`"k%d"::%s`, i, s.casts[i])
		aliases[i] = fmt.Sprintf(`"k%d"`, i)
	}
	where := fmt.Sprintf(" WHERE (%s) IN (SELECT %s FROM ROWS FROM (%s) AS u(%s))",
		strings.Join(s.keys, ", "), strings.Join(names, ", "), strings.Join(arrays, ", "), strings.Join(aliases, ", "))
	if s.filter != "" {
		where += " AND " + s.filter
	}
	return where, args
}

// literal writes v as an escape string constant, which reads the same whatever
// standard_conforming_strings is.
func literal(v string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
}

// textArray writes vs as a text[] constant's text ("{...}"), every element quoted.
func textArray(vs []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
