package cdc

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strings"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
)

// Keyed batches: a run of updates of one table that set the same columns, or a run of its
// deletes, all identified by the table's key, is sent as one statement that joins the table to
// the rows unnested from one array parameter per column:
//
//	UPDATE ONLY t AS "t" SET "c" = "v"."p1"
//	FROM (SELECT pg_catalog.unnest($1) AS "p1", pg_catalog.unnest($2) AS "p2") AS "v" WHERE "t"."id" = "v"."p2"
//
// (unnest in the select list, in lockstep: in FROM, unnest of a composite type's array would
// expand into the type's columns).
//
// The destination parses, plans and starts one statement per batch instead of one per row (a
// quarter less of its CPU time per update). The parameters are typed with the array types of
// the destination's columns and carry the values in their text form, so every type round-trips as
// it does statement by statement. A batch never holds one key twice (the join would apply only
// one of the two changes). Changes without a usable key (REPLICA IDENTITY FULL or NOTHING), that
// change their key, with a value above keyedValueMax, or of a column whose type has no array type
// go statement by statement, after the table's batch. Box values are separated by ';' in their
// arrays, every other built-in type's by ','.
//
// A batch is sent at keyedRows rows or keyedBytes, all batches when they hold batchBytes together.
const (
	keyedRows     = 2000
	keyedBytes    = 8 << 20
	keyedValueMax = 1 << 20
)

// Column roles in a keyed batch's shape.
const (
	roleKey   = 'k' // identifies the row
	roleSet   = 's' // set by the update
	roleSkip  = '-' // not sent: unchanged TOAST value, or not part of a delete's key
	roleGuard = 'g' // a GENERATED ALWAYS identity column an update cannot set: checked (identityGuard)
)

// keyedStmt is the prepared statement of one shape: table, operation and column roles. An empty
// name means the shape cannot be batched (a column type without an array type).
type keyedStmt struct {
	name   string
	sql    string
	op     string // opUpdate or opDelete
	table  spec.QName
	cols   []int // relation columns in parameter order: the columns set, the guarded, the key
	keys   int   // how many of cols are the key
	guard  identityGuard
	delims []byte // the array element delimiter of each parameter
	// formats: 1 where a parameter is sent in binary (text types, see binaryArrayElem), else 0.
	formats []int16
	elems   []uint32    // element type of each parameter
	spare   *keyedBatch // a sent batch, its buffers kept for the next one
}

// Text, varchar and bpchar arrays are sent in binary: their elements' binary form is their text,
// and the destination reads a binary array without scanning it character by character, as it
// does a text array literal (a sixth of its CPU time on a table with a char(84) column).
var binaryArrayElem = map[uint32]bool{25: true, 1043: true, 1042: true}

// arrayHeader is the size of a one-dimensional binary array's header: dimensions, flags, element
// type, length, lower bound.
const arrayHeader = 20

// keyedBatch is a run of changes of one shape, not sent yet.
type keyedBatch struct {
	stmt     *keyedStmt
	arrays   []bytes.Buffer // per parameter: a text array literal without its closing brace, or a binary array without its header
	rows     int
	size     int
	keys     map[uint64]struct{} // hashes of the keys: a collision only ends the batch early
	firstKey string
	lastKey  []byte // as in keys: each key column's length and value
}

// batchKeyed adds a change identified by the table's key to the table's keyed batch. It reports
// false when the change must go statement by statement instead.
func (a *applier) batchKeyed(ctx context.Context, relID uint32, rel *pglogrepl.RelationMessage, tm spec.TableMap, cols map[string]catalog.DestColumn, op string, tuple *pglogrepl.TupleData) (bool, error) {
	if a.exact || (rel.ReplicaIdentity != 'd' && rel.ReplicaIdentity != 'i') || len(tuple.Columns) != len(rel.Columns) {
		return false, nil
	}
	identity := a.alwaysIdentity(relID, rel, tm, cols)
	shape := binary.BigEndian.AppendUint32(a.scratch[:0], relID)
	shape = append(shape, op[0])
	sets := 0
	for i, c := range tuple.Columns {
		key := rel.Columns[i].Flags&1 == 1
		switch {
		case len(c.Data) > keyedValueMax:
			return false, nil
		case key && c.DataType != pglogrepl.TupleDataTypeText:
			return false, nil // a key sent as null or unchanged TOAST cannot identify the row
		case key:
			shape = append(shape, roleKey)
		case op == opDelete || c.DataType == pglogrepl.TupleDataTypeToast:
			shape = append(shape, roleSkip)
		case identity != nil && identity[i]:
			if c.DataType != pglogrepl.TupleDataTypeText {
				return false, nil
			}
			shape = append(shape, roleGuard)
		default:
			shape = append(shape, roleSet)
			sets++
		}
	}
	a.scratch = shape
	if op == opUpdate && sets == 0 {
		return true, nil // only the key, unchanged: nothing to do
	}
	st := a.keyedStmts[string(shape)]
	if st == nil {
		var err error
		if st, err = a.prepareKeyed(ctx, rel, tm, cols, op, string(shape)); err != nil {
			return false, err
		}
	}
	if st.name == "" {
		return false, nil
	}
	key := a.keyScratch[:0]
	for _, i := range st.cols[len(st.cols)-st.keys:] {
		key = binary.BigEndian.AppendUint32(key, uint32(len(tuple.Columns[i].Data)))
		key = append(key, tuple.Columns[i].Data...)
	}
	a.keyScratch = key
	hash := maphash.Bytes(a.seed, key)
	b := a.batches[relID]
	if b != nil {
		if _, dup := b.keys[hash]; dup || b.stmt != st {
			if err := a.sendBatch(ctx, relID); err != nil {
				return false, err
			}
			b = nil
		}
	}
	if b == nil {
		if err := a.flushRun(ctx, relID); err != nil { // the table's inserts come first
			return false, err
		}
		if b = st.spare; b != nil {
			st.spare = nil
		} else {
			b = &keyedBatch{stmt: st, arrays: make([]bytes.Buffer, len(st.cols)), keys: map[uint64]struct{}{}}
		}
		b.firstKey = keyText(rel, tuple)
		for i := range b.arrays {
			if st.formats[i] == 1 {
				b.arrays[i].Write(make([]byte, arrayHeader)) // filled in by sendBatch
			} else {
				b.arrays[i].WriteByte('{')
			}
		}
		a.batches[relID] = b
	}
	b.keys[hash] = struct{}{}
	grown := 0
	for j, i := range st.cols {
		n := b.arrays[j].Len()
		switch {
		case st.formats[j] == 1:
			appendBinaryElement(&b.arrays[j], tuple.Columns[i])
		case b.rows > 0:
			b.arrays[j].WriteByte(st.delims[j])
			fallthrough
		default:
			appendArrayElement(&b.arrays[j], tuple.Columns[i])
		}
		grown += b.arrays[j].Len() - n
	}
	b.size += grown
	a.batchBytes += grown
	b.rows++
	b.lastKey = append(b.lastKey[:0], key...)
	switch {
	case b.rows >= keyedRows || b.size >= keyedBytes:
		return true, a.sendBatch(ctx, relID)
	case a.batchBytes >= batchBytes:
		return true, a.sendBatches(ctx)
	}
	return true, nil
}

// alwaysIdentity tells, by the relation's column index, which columns are GENERATED ALWAYS
// identity columns on the destination (nil: none), worked out once per relation description:
// batchKeyed asks for every change.
func (a *applier) alwaysIdentity(relID uint32, rel *pglogrepl.RelationMessage, tm spec.TableMap, cols map[string]catalog.DestColumn) []bool {
	if flags, ok := a.identity[relID]; ok {
		return flags
	}
	var flags []bool
	for i, c := range rel.Columns {
		if cols[tm.DestColumn(c.Name)].AlwaysIdentity {
			if flags == nil {
				flags = make([]bool, len(rel.Columns))
			}
			flags[i] = true
		}
	}
	a.identity[relID] = flags
	return flags
}

// lastKeyText renders the last key as keyText does.
func (b *keyedBatch) lastKeyText(rel *pglogrepl.RelationMessage) string {
	key := b.lastKey
	var parts []string
	for _, i := range b.stmt.cols[len(b.stmt.cols)-b.stmt.keys:] {
		if len(key) < 4 {
			break
		}
		n := int(binary.BigEndian.Uint32(key))
		parts = append(parts, rel.Columns[i].Name+"="+string(key[4:4+n]))
		key = key[4+n:]
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// prepareKeyed prepares the statement of a shape (see batchKeyed), or records that it cannot be
// batched.
func (a *applier) prepareKeyed(ctx context.Context, rel *pglogrepl.RelationMessage, tm spec.TableMap, types map[string]catalog.DestColumn, op, shape string) (*keyedStmt, error) {
	if err := a.resolve(ctx); err != nil {
		return nil, err
	}
	st := &keyedStmt{op: op, table: tm.Dest}
	a.keyedStmts[shape] = st
	var oids []uint32
	var sets, conds, unnest []string
	for _, role := range []byte{roleSet, roleGuard, roleKey} {
		for i := range rel.Columns {
			if shape[5+i] != role {
				continue
			}
			col := quote(tm.DestColumn(rel.Columns[i].Name))
			at := types[tm.DestColumn(rel.Columns[i].Name)]
			if at.ArrayOID == 0 {
				return st, nil // no array type (or no such column: statement by statement says so)
			}
			st.cols = append(st.cols, i)
			st.delims = append(st.delims, at.Delimiter)
			st.elems = append(st.elems, at.Elem)
			if binaryArrayElem[at.Elem] {
				st.formats = append(st.formats, 1)
			} else {
				st.formats = append(st.formats, 0)
			}
			oids = append(oids, at.ArrayOID)
			p := fmt.Sprintf(`"p%d"`, len(st.cols))
			unnest = append(unnest, fmt.Sprintf("pg_catalog.unnest($%d) AS %s", len(st.cols), p))
			switch role {
			case roleSet:
				sets = append(sets, col+` = "v".`+p)
			case roleGuard:
				st.guard.add(tm.DestColumn(rel.Columns[i].Name), `"t".`+col+` <> "v".`+p)
			default:
				conds = append(conds, `"t".`+col+` = "v".`+p)
				st.keys++
			}
		}
	}
	rows := fmt.Sprintf(`(SELECT %s) AS "v"`, strings.Join(unnest, ", "))
	if op == opUpdate {
		st.sql = fmt.Sprintf(`UPDATE ONLY %s AS "t" SET %s FROM %s WHERE %s%s`, tm.Dest.Quoted(), strings.Join(sets, ", "), rows, strings.Join(conds, " AND "), st.guard.returning())
	} else {
		st.sql = fmt.Sprintf(`DELETE FROM ONLY %s AS "t" USING %s WHERE %s`, tm.Dest.Quoted(), rows, strings.Join(conds, " AND "))
	}
	a.prepares++
	name := fmt.Sprintf("skein_keyed_%d", a.prepares)
	if _, err := a.dest.PgConn().Prepare(ctx, name, st.sql, oids); err != nil {
		return nil, fmt.Errorf("%s %s: prepare: %w (statement: %s)", op, tm.Dest, withDetail(err), st.sql)
	}
	st.name = name
	return st, nil
}

// sendBatch adds a table's keyed batch, if it has one, to the pipeline.
func (a *applier) sendBatch(ctx context.Context, relID uint32) error {
	b := a.batches[relID]
	if b == nil {
		return nil
	}
	delete(a.batches, relID)
	a.batchBytes -= b.size
	params := make([][]byte, len(b.arrays))
	for i := range b.arrays {
		if b.stmt.formats[i] == 1 {
			params[i] = b.arrays[i].Bytes()
			h := params[i][:0]
			h = binary.BigEndian.AppendUint32(h, 1) // dimensions
			h = binary.BigEndian.AppendUint32(h, 0) // flags (NULLs are marked per element)
			h = binary.BigEndian.AppendUint32(h, b.stmt.elems[i])
			h = binary.BigEndian.AppendUint32(h, uint32(b.rows))
			binary.BigEndian.AppendUint32(h, 1) // lower bound
			continue
		}
		b.arrays[i].WriteByte('}')
		params[i] = b.arrays[i].Bytes()
	}
	keys := b.firstKey
	if b.rows > 1 {
		keys += " … " + b.lastKeyText(a.relations[relID])
	}
	if ce := a.log.Check(zap.DebugLevel, "keyed batch"); ce != nil {
		ce.Write(zap.String("op", b.stmt.op), zap.Stringer("table", b.stmt.table), zap.Int("rows", b.rows), zap.String("keys", keys))
	}
	err := a.pipeline(ctx, b.stmt.name, params, b.stmt.formats, queued{rel: relID, op: b.stmt.op, table: b.stmt.table, key: keys, sql: b.stmt.sql, rows: b.rows, guard: b.stmt.guard})
	// The pipeline holds its own copy of the parameters: the batch's buffers serve the next one.
	for i := range b.arrays {
		b.arrays[i].Reset()
	}
	clear(b.keys)
	b.rows, b.size = 0, 0
	b.stmt.spare = b
	return err
}

// sendBatches adds every table's keyed batch to the pipeline.
func (a *applier) sendBatches(ctx context.Context) error {
	for rel := range a.batches {
		if err := a.sendBatch(ctx, rel); err != nil {
			return err
		}
	}
	return nil
}

// forgetRelation drops what was derived from a relation's columns before a new description
// replaces it: its pending batch is sent, its batch statements are prepared anew when used. The
// source sends a relation again also when nothing of it changed (after a VACUUM or ANALYZE): then
// everything is kept.
func (a *applier) forgetRelation(ctx context.Context, relID uint32, next *pglogrepl.RelationMessage) error {
	if prev, ok := a.relations[relID]; !ok || sameRelation(prev, next) {
		return nil
	}
	if err := a.sendBatch(ctx, relID); err != nil {
		return err
	}
	prefix := string(binary.BigEndian.AppendUint32(nil, relID))
	for shape := range a.keyedStmts {
		if strings.HasPrefix(shape, prefix) {
			delete(a.keyedStmts, shape)
		}
	}
	delete(a.identity, relID)
	if rel, ok := a.relations[relID]; ok {
		if tm, ok := a.tables[spec.QName{Schema: rel.Namespace, Name: rel.RelationName}]; ok {
			delete(a.columns, tm.Dest)
		}
	}
	return nil
}

// appendArrayElement writes one value as an element of an array literal: double-quoted with
// backslash and double quote escaped, or NULL.
func appendArrayElement(buf *bytes.Buffer, c *pglogrepl.TupleDataColumn) {
	if c.DataType == pglogrepl.TupleDataTypeNull {
		buf.WriteString("NULL")
		return
	}
	buf.WriteByte('"')
	data := c.Data
	for len(data) > 0 {
		i := bytes.IndexAny(data, `"\`)
		if i < 0 {
			buf.Write(data)
			break
		}
		buf.Write(data[:i])
		buf.WriteByte('\\')
		buf.WriteByte(data[i])
		data = data[i+1:]
	}
	buf.WriteByte('"')
}

// appendBinaryElement writes one value as an element of a binary array: its length (-1 for
// NULL) and its bytes.
func appendBinaryElement(buf *bytes.Buffer, c *pglogrepl.TupleDataColumn) {
	if c.DataType == pglogrepl.TupleDataTypeNull {
		buf.Write([]byte{0xff, 0xff, 0xff, 0xff})
		return
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(c.Data)))
	buf.Write(n[:])
	buf.Write(c.Data)
}

// logMissing warns of updates or deletes that found no row on the destination.
func (a *applier) logMissing(q queued, missing int64) {
	if q.rows <= 1 {
		a.log.Warn(q.op+" found no row on the destination", zap.Stringer("table", q.table), zap.String("key", q.key))
		return
	}
	a.log.Warn(fmt.Sprintf("%d of %d changes (%s) found no row on the destination", missing, q.rows, q.op),
		zap.Stringer("table", q.table), zap.String("keys", q.key))
}

// sameRelation reports whether two descriptions of a relation agree on everything a keyed
// statement depends on.
func sameRelation(a, b *pglogrepl.RelationMessage) bool {
	if a.Namespace != b.Namespace || a.RelationName != b.RelationName || a.ReplicaIdentity != b.ReplicaIdentity || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i, c := range a.Columns {
		d := b.Columns[i]
		if c.Name != d.Name || c.Flags != d.Flags || c.DataType != d.DataType || c.TypeModifier != d.TypeModifier {
			return false
		}
	}
	return true
}
