package cdc

import (
	"context"
	"fmt"
	"hash/maphash"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
)

// Counts are the changes applied (api.Counts).
type Counts = api.Counts

// applier turns pgoutput row messages into statements on the destination. Values stay in
// PostgreSQL's text format end to end (pgoutput sends text; parameters are sent as text with
// unspecified types), so every type round-trips exactly as its own input/output functions define.
type applier struct {
	dest      *pgx.Conn
	tables    map[spec.QName]spec.TableMap
	relations map[uint32]*pglogrepl.RelationMessage
	stmts     map[string]string // SQL -> prepared statement name
	counts    Counts
	log       *zap.Logger
	upsert    bool // conflict_mode: ignore: an insert overwrites a row with the same key
	// skipBefore and txLSN: a table's changes in transactions committed before its LSN are skipped.
	skipBefore map[spec.QName]pglogrepl.LSN
	txLSN      pglogrepl.LSN // commit LSN of the current source transaction
	// replay skips the changes lanes of an earlier run applied already (lanes.go).
	replay *replayWindow

	runs       map[uint32]*insertBatch // per table: a run of inserts, not sent yet
	runBytes   int                     // size of all runs
	pipe       *pgconn.Batch           // updates and deletes, not sent yet
	piped      []queued                // what pipe holds, in order
	pipeTables map[uint32]bool         // the tables pipe holds statements of
	pipeRows   int                     // changes pipe holds
	inflight   *pgconn.MultiResultReader
	inflightQ  []queued // what inflight executes, in order
	// walCommitted is the destination's WAL insert position read after its last commit,
	// walFlushed how far its WAL was flushed then (durable.go).
	walCommitted, walFlushed pglogrepl.LSN
	// beginPending: a destination transaction is open but its BEGIN is not sent yet; it goes
	// first in the next pipeline, or on its own before anything else (resolve).
	beginPending bool
	ctlPrepared  bool // the transaction's own statements are prepared (begin)
	// Keyed batches (keyed.go): per table a run of updates or deletes not sent yet, the
	// statements by shape, the destination tables' array types. exact sends every change as
	// its own statement (after a failed attempt: the error then names the change exactly).
	batches    map[uint32]*keyedBatch
	batchBytes int // size of all batches
	keyedStmts map[string]*keyedStmt
	columns    map[spec.QName]map[string]catalog.DestColumn // per destination table, see destColumns
	identity   map[uint32][]bool                            // per relation, see alwaysIdentity
	exact      bool
	prepares   int
	scratch    []byte
	keyScratch []byte
	seed       maphash.Seed // of the key hashes
	// unknown decides about changes of relations the task does not know (StreamOptions.Unknown);
	// skipped holds the relations it let skip, until their next description.
	unknown UnknownRelation
	skipped map[uint32]bool
	// schema is the selected tables' recorded schema, when schema changes are applied
	// (schema_change.go); lastSchemaChange the last one, for status.
	schema           *schemaModel
	lastSchemaChange string
	tablesVersion    int           // schema changes that changed the table list
	renamed          []spec.Rename // destination tables renamed to follow their source's, in order
	notReplicated    []string      // schema changes of other objects (views, functions, types), reported
}

// UnknownRelation decides about a change of a relation that is not in the task's table list
// (looked up by the name the change stream gives it): nil skips its changes (it left the
// publication: removed from the selection); an error stops the apply. name is the relation's
// name in the stream, relID its OID on the source.
type UnknownRelation func(ctx context.Context, relID uint32, name spec.QName) error

func newApplier(dest *pgx.Conn, tables []spec.TableMap, log *zap.Logger) *applier {
	a := &applier{
		dest:       dest,
		tables:     map[spec.QName]spec.TableMap{},
		relations:  map[uint32]*pglogrepl.RelationMessage{},
		stmts:      map[string]string{},
		runs:       map[uint32]*insertBatch{},
		pipeTables: map[uint32]bool{},
		batches:    map[uint32]*keyedBatch{},
		keyedStmts: map[string]*keyedStmt{},
		columns:    map[spec.QName]map[string]catalog.DestColumn{},
		identity:   map[uint32][]bool{},
		skipped:    map[uint32]bool{},
		seed:       maphash.MakeSeed(),
		log:        log,
	}
	for _, t := range tables {
		a.tables[t.Source] = t
	}
	return a
}

// table returns the relation of a change and its table: ok is false for a change to skip (of a
// table an added table's helper stream applied, or of a relation that left the selection). A
// relation the task does not know is never skipped silently: unknown decides.
func (a *applier) table(ctx context.Context, relID uint32) (*pglogrepl.RelationMessage, spec.TableMap, bool, error) {
	rel, ok := a.relations[relID]
	if !ok {
		return nil, spec.TableMap{}, false, fmt.Errorf("change for unknown relation %d (no relation message)", relID)
	}
	name := spec.QName{Schema: rel.Namespace, Name: rel.RelationName}
	tm, ok := a.tables[name]
	if !ok {
		if a.skipped[relID] {
			return rel, tm, false, nil
		}
		if err := a.unknownRelation(ctx, relID, name); err != nil {
			return rel, tm, false, err
		}
		a.skipped[relID] = true
		a.log.Warn("changes of a relation that is no longer selected are skipped", zap.Stringer("relation", name), zap.Uint32("oid", relID))
		return rel, tm, false, nil
	}
	if lsn, skip := a.skipBefore[name]; skip && a.txLSN < lsn {
		return rel, tm, false, nil
	}
	return rel, tm, true, nil
}

// unknownRelation asks StreamOptions.Unknown about a relation the task does not know; without
// one, its changes stop the apply.
func (a *applier) unknownRelation(ctx context.Context, relID uint32, name spec.QName) error {
	if err := a.resolve(ctx); err != nil {
		return err
	}
	if a.unknown != nil {
		return a.unknown(ctx, relID, name)
	}
	return errclass.Permanent(fmt.Errorf("change of %s (OID %d), which is not in the task's selection", name, relID))
}

// destColumns returns what apply needs to know of tm's destination columns, read once per
// relation description.
func (a *applier) destColumns(ctx context.Context, tm spec.TableMap) (map[string]catalog.DestColumn, error) {
	cols, ok := a.columns[tm.Dest]
	if ok {
		return cols, nil
	}
	if err := a.resolve(ctx); err != nil {
		return nil, err
	}
	cols, err := catalog.DestColumns(ctx, a.dest, tm.Dest)
	if err != nil {
		return nil, err
	}
	a.columns[tm.Dest] = cols
	return cols, nil
}

// prepared returns the name of the prepared statement for sql, preparing it the first time.
func (a *applier) prepared(ctx context.Context, sql string) (string, error) {
	name, ok := a.stmts[sql]
	if !ok {
		if err := a.resolve(ctx); err != nil {
			return "", err
		}
		name = fmt.Sprintf("skein_apply_%d", len(a.stmts)+1)
		if _, err := a.dest.PgConn().Prepare(ctx, name, sql, nil); err != nil {
			return "", err
		}
		a.stmts[sql] = name
	}
	return name, nil
}

func quote(s string) string { return pgx.Identifier{s}.Sanitize() }

func (a *applier) insert(ctx context.Context, m *pglogrepl.InsertMessage) error {
	rel, tm, ok, err := a.table(ctx, m.RelationID)
	if err != nil || !ok || !tm.Allows(spec.OpInsert) || a.replay.applied(rel, m.Tuple, a.txLSN) {
		return err
	}
	if !a.upsert {
		return a.batchInsert(ctx, m, rel, tm)
	}
	if err := a.flush(ctx); err != nil {
		return err
	}
	cols, err := a.destColumns(ctx, tm)
	if err != nil {
		return err
	}
	var names, ph []string
	var params [][]byte
	for i, c := range m.Tuple.Columns {
		if c.DataType == pglogrepl.TupleDataTypeToast {
			continue // cannot happen for inserts; never write a placeholder
		}
		names = append(names, quote(tm.DestColumn(rel.Columns[i].Name)))
		params = append(params, value(c))
		ph = append(ph, fmt.Sprintf("$%d", len(params)))
	}
	upsert, guard := upsertClause(rel, tm, cols, m.Tuple, &params)
	sql := fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s)%s%s",
		tm.Dest.Quoted(), strings.Join(names, ", "), strings.Join(ph, ", "), upsert, guard.returning())
	if err := a.resolve(ctx); err != nil {
		return err
	}
	name, err := a.prepared(ctx, sql)
	if err != nil {
		return fmt.Errorf("insert into %s: prepare: %w (statement: %s)", tm.Dest, err, sql)
	}
	res := a.dest.PgConn().ExecPrepared(ctx, name, params, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("insert into %s key %s: %w (statement: %s)", tm.Dest, keyText(rel, m.Tuple), withDetail(res.Err), sql)
	}
	if guard.changed(res.Rows) {
		return guard.failed("insert into", tm.Dest, keyText(rel, m.Tuple))
	}
	a.counts.Inserts++
	return nil
}

// upsertClause turns an insert into an overwrite on the destination table's primary key (the
// relation's key, or, for REPLICA IDENTITY FULL, the destination's primary key); a table without
// a key gets the row inserted as is. GENERATED ALWAYS identity columns cannot be set by the
// overwrite: they are guarded instead (see identityGuard), with their values appended to params.
func upsertClause(rel *pglogrepl.RelationMessage, tm spec.TableMap, cols map[string]catalog.DestColumn, tuple *pglogrepl.TupleData, params *[][]byte) (string, identityGuard) {
	var keys, sets []string
	var guard identityGuard
	for i, col := range rel.Columns {
		dest := tm.DestColumn(col.Name)
		name := quote(dest)
		key := col.Flags&1 == 1 && rel.ReplicaIdentity != 'f'
		if rel.ReplicaIdentity == 'f' {
			key = cols[dest].InPrimaryKey
		}
		switch {
		case key:
			keys = append(keys, name)
		case cols[dest].AlwaysIdentity:
			if i < len(tuple.Columns) && tuple.Columns[i].DataType == pglogrepl.TupleDataTypeText {
				*params = append(*params, tuple.Columns[i].Data)
				guard.add(dest, fmt.Sprintf("%s <> $%d", name, len(*params)))
			}
		default:
			sets = append(sets, name+" = EXCLUDED."+name)
		}
	}
	switch {
	case len(keys) == 0:
		return "", identityGuard{}
	case len(sets) == 0:
		return " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO NOTHING", guard
	}
	return " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(sets, ", "), guard
}

// identityGuard checks, in the RETURNING list of an update, that the GENERATED ALWAYS identity
// columns it cannot set already hold the source's new values. An update cannot set such a column
// (only to DEFAULT), so it is left out of the SET list; its value changes on the source only with
// UPDATE ... SET col = DEFAULT (or OVERRIDING on the source), and then the apply stops, naming the
// column, instead of keeping the old value silently.
type identityGuard struct {
	columns []string
	conds   []string // one per column: true when the destination's value differs
}

func (g *identityGuard) add(column, cond string) {
	g.columns = append(g.columns, column)
	g.conds = append(g.conds, cond)
}

// returning is the RETURNING clause of a guarded statement ("" without a guard).
func (g identityGuard) returning() string {
	if len(g.conds) == 0 {
		return ""
	}
	return " RETURNING (" + strings.Join(g.conds, ") OR (") + ")"
}

// changed reports whether a returned row says an identity column differs.
func (g identityGuard) changed(rows [][][]byte) bool {
	if len(g.conds) == 0 {
		return false
	}
	for _, r := range rows {
		if len(r) > 0 && string(r[0]) == "t" {
			return true
		}
	}
	return false
}

// failed is the permanent error of a changed identity column.
func (g identityGuard) failed(op string, table spec.QName, key string) error {
	cols := strings.Join(g.columns, ", ")
	return errclass.Permanent(fmt.Errorf("%s %s key %s: identity column %s is GENERATED ALWAYS on the destination and its value changed on the source, which an update cannot set there: "+
		"ALTER TABLE %s ALTER COLUMN %s SET GENERATED BY DEFAULT on the destination, then resume the task", op, table, key, cols, table.Quoted(), quote(g.columns[0])))
}

func value(c *pglogrepl.TupleDataColumn) []byte {
	if c.DataType == pglogrepl.TupleDataTypeNull {
		return nil
	}
	if c.Data == nil {
		return []byte{}
	}
	return c.Data
}

// where builds the row-identifying condition from old (the key or old tuple) or, without one, the
// key columns of the new tuple. It starts numbering parameters after n. Values of types without
// a plain equality (json, xml, point, box, arrays, composites: DestColumn.PlainEquality) are
// compared by their text form, NULLs with IS NULL; in a row identified by all its values
// (REPLICA IDENTITY FULL), so is every value whose = is not identity (DestColumn.IdentityEquality).
func where(rel *pglogrepl.RelationMessage, tm spec.TableMap, cols map[string]catalog.DestColumn, old *pglogrepl.TupleData, newTuple *pglogrepl.TupleData, n int) (string, [][]byte, error) {
	var conds []string
	var params [][]byte
	for i, col := range rel.Columns {
		var c *pglogrepl.TupleDataColumn
		switch {
		case old != nil && i < len(old.Columns):
			c = old.Columns[i]
			if c.DataType == pglogrepl.TupleDataTypeNull && col.Flags&1 == 0 && rel.ReplicaIdentity != 'f' {
				continue // not part of the key: pgoutput sends it as null
			}
		case old == nil && col.Flags&1 == 1:
			c = newTuple.Columns[i]
		default:
			continue
		}
		if c.DataType == pglogrepl.TupleDataTypeToast {
			continue
		}
		dest := tm.DestColumn(col.Name)
		name := quote(dest)
		if c.DataType == pglogrepl.TupleDataTypeNull {
			conds = append(conds, name+" IS NULL")
			continue
		}
		params = append(params, c.Data)
		dc, known := cols[dest]
		switch {
		case known && rel.ReplicaIdentity == 'f' && !dc.IdentityEquality:
			// The row is identified by all its values: the stored value itself, not one = to it.
			conds = append(conds, fmt.Sprintf(`(%s::pg_catalog.text) COLLATE pg_catalog."C" = $%d::pg_catalog.text`, name, n+len(params)))
			continue
		case known && !dc.PlainEquality:
			conds = append(conds, fmt.Sprintf("%s::pg_catalog.text = $%d::pg_catalog.text", name, n+len(params)))
			continue
		}
		conds = append(conds, fmt.Sprintf("%s = $%d", name, n+len(params)))
	}
	if len(conds) == 0 {
		return "", nil, fmt.Errorf("%s has no replica identity: set a primary key or REPLICA IDENTITY FULL on the source", tm.Source)
	}
	return strings.Join(conds, " AND "), params, nil
}

// oneRow limits a statement on a keyless table (REPLICA IDENTITY FULL) to one row matching cond:
// identical rows are distinct rows, and a change on the source changed one of them.
func oneRow(table spec.QName, cond string) string {
	return fmt.Sprintf("ctid = (SELECT ctid FROM ONLY %s WHERE %s LIMIT 1)", table.Quoted(), cond)
}

// keyText renders the identifying values for error messages.
func keyText(rel *pglogrepl.RelationMessage, t *pglogrepl.TupleData) string {
	if t == nil {
		return ""
	}
	var parts []string
	for i, col := range rel.Columns {
		if col.Flags&1 == 1 && i < len(t.Columns) && t.Columns[i].DataType == pglogrepl.TupleDataTypeText {
			parts = append(parts, col.Name+"="+string(t.Columns[i].Data))
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func (a *applier) update(ctx context.Context, m *pglogrepl.UpdateMessage) error {
	rel, tm, ok, err := a.table(ctx, m.RelationID)
	if err != nil || !ok || !tm.Allows(spec.OpUpdate) {
		return err
	}
	if key := m.OldTuple; a.replay != nil {
		if key == nil {
			key = m.NewTuple
		}
		if a.replay.applied(rel, key, a.txLSN) {
			return nil
		}
	}
	cols, err := a.destColumns(ctx, tm)
	if err != nil {
		return err
	}
	if m.OldTuple == nil {
		if batched, err := a.batchKeyed(ctx, m.RelationID, rel, tm, cols, opUpdate, m.NewTuple); batched || err != nil {
			return err
		}
	}
	var sets []string
	var params [][]byte
	var guard identityGuard
	for i, c := range m.NewTuple.Columns {
		if c.DataType == pglogrepl.TupleDataTypeToast {
			continue // unchanged TOAST value: leave the destination's value alone
		}
		if m.OldTuple == nil && rel.Columns[i].Flags&1 == 1 {
			continue // key unchanged: it is in the WHERE clause (and may be GENERATED ALWAYS)
		}
		dest := tm.DestColumn(rel.Columns[i].Name)
		params = append(params, value(c))
		if cols[dest].AlwaysIdentity {
			if c.DataType == pglogrepl.TupleDataTypeText {
				guard.add(dest, fmt.Sprintf("%s <> $%d", quote(dest), len(params)))
			} else {
				params = params[:len(params)-1]
			}
			continue
		}
		sets = append(sets, fmt.Sprintf("%s = $%d", quote(dest), len(params)))
	}
	if len(sets) == 0 {
		return nil
	}
	cond, wparams, err := where(rel, tm, cols, m.OldTuple, m.NewTuple, len(params))
	if err != nil {
		return err
	}
	params = append(params, wparams...)
	if rel.ReplicaIdentity == 'f' {
		cond = oneRow(tm.Dest, cond)
	}
	// ONLY: a change is for this table's own rows, not those of tables that inherit from it.
	sql := fmt.Sprintf("UPDATE ONLY %s SET %s WHERE %s%s", tm.Dest.Quoted(), strings.Join(sets, ", "), cond, guard.returning())
	key := m.OldTuple
	if key == nil {
		key = m.NewTuple
	}
	return a.queue(ctx, sql, params, queued{rel: m.RelationID, op: opUpdate, table: tm.Dest, key: keyText(rel, key), sql: sql, guard: guard})
}

func (a *applier) delete(ctx context.Context, m *pglogrepl.DeleteMessage) error {
	rel, tm, ok, err := a.table(ctx, m.RelationID)
	if err != nil || !ok || !tm.Allows(spec.OpDelete) || a.replay.applied(rel, m.OldTuple, a.txLSN) {
		return err
	}
	cols, err := a.destColumns(ctx, tm)
	if err != nil {
		return err
	}
	if m.OldTuple != nil {
		if batched, err := a.batchKeyed(ctx, m.RelationID, rel, tm, cols, opDelete, m.OldTuple); batched || err != nil {
			return err
		}
	}
	cond, params, err := where(rel, tm, cols, m.OldTuple, nil, 0)
	if err != nil {
		return err
	}
	if rel.ReplicaIdentity == 'f' {
		cond = oneRow(tm.Dest, cond)
	}
	sql := fmt.Sprintf("DELETE FROM ONLY %s WHERE %s", tm.Dest.Quoted(), cond)
	return a.queue(ctx, sql, params, queued{rel: m.RelationID, op: opDelete, table: tm.Dest, key: keyText(rel, m.OldTuple), sql: sql})
}

// truncate empties the selected tables of a source TRUNCATE together (so that foreign keys
// among them do not refuse it), with RESTART IDENTITY when the source's had it. CASCADE on the
// source already lists every table it emptied; on the destination nothing else is emptied (as a
// native subscription does): a table outside the selection that references one of them makes
// the apply stop.
func (a *applier) truncate(ctx context.Context, m *pglogrepl.TruncateMessage) error {
	if err := a.flush(ctx); err != nil {
		return err
	}
	var names []string
	for _, id := range m.RelationIDs {
		_, tm, ok, err := a.table(ctx, id)
		if err != nil {
			return err
		}
		if ok && tm.Allows(spec.OpTruncate) {
			names = append(names, tm.Dest.Quoted())
		}
	}
	if len(names) == 0 {
		return nil
	}
	sql := "TRUNCATE " + strings.Join(names, ", ")
	if m.Option&pglogrepl.TruncateOptionRestartIdentity != 0 {
		sql += " RESTART IDENTITY"
	}
	if _, err := a.dest.Exec(ctx, sql); err != nil {
		return fmt.Errorf("truncate %s: %w (statement: %s)", strings.Join(names, ", "), withDetail(err), sql)
	}
	a.counts.Truncates++
	return nil
}
