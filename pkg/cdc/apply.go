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

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
)

// Counts are the changes applied.
type Counts struct {
	Transactions int64 `json:"transactions"`
	Inserts      int64 `json:"inserts"`
	Updates      int64 `json:"updates"`
	Deletes      int64 `json:"deletes"`
	Truncates    int64 `json:"truncates"`
	// Missing counts updates and deletes that found no row on the destination.
	Missing int64 `json:"missing"`
	// Streamed counts transactions the source sent in parts before their commit (large ones),
	// kept on the worker's disk and applied at their commit.
	Streamed int64 `json:"streamed,omitempty"`
}

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
	txLSN      pglogrepl.LSN           // commit LSN of the current source transaction
	runs       map[uint32]*insertBatch // per table: a run of inserts, not sent yet
	runBytes   int                     // size of all runs
	pipe       *pgconn.Batch           // updates and deletes, not sent yet
	piped      []queued                // what pipe holds, in order
	pipeTables map[uint32]bool         // the tables pipe holds statements of
	pipeRows   int                     // changes pipe holds
	inflight   *pgconn.MultiResultReader
	inflightQ  []queued // what inflight executes, in order
	// Keyed batches (keyed.go): per table a run of updates or deletes not sent yet, the
	// statements by shape, the destination tables' array types. exact sends every change as
	// its own statement (after a failed attempt: the error then names the change exactly).
	batches    map[uint32]*keyedBatch
	batchBytes int // size of all batches
	keyedStmts map[string]*keyedStmt
	arrayTypes map[spec.QName]map[string]catalog.ArrayType
	exact      bool
	prepares   int
	scratch    []byte
	keyScratch []byte
	seed       maphash.Seed // of the key hashes
}

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
		arrayTypes: map[spec.QName]map[string]catalog.ArrayType{},
		seed:       maphash.MakeSeed(),
		log:        log,
	}
	for _, t := range tables {
		a.tables[t.Source] = t
	}
	return a
}

func (a *applier) table(relID uint32) (*pglogrepl.RelationMessage, spec.TableMap, bool, error) {
	rel, ok := a.relations[relID]
	if !ok {
		return nil, spec.TableMap{}, false, fmt.Errorf("change for unknown relation %d (no relation message)", relID)
	}
	name := spec.QName{Schema: rel.Namespace, Name: rel.RelationName}
	tm, ok := a.tables[name]
	if lsn, skip := a.skipBefore[name]; ok && skip && a.txLSN < lsn {
		return rel, tm, false, nil
	}
	return rel, tm, ok, nil
}

// prepared returns the name of the prepared statement for sql, preparing it the first time.
func (a *applier) prepared(ctx context.Context, sql string) (string, error) {
	name, ok := a.stmts[sql]
	if !ok {
		if err := a.resolve(); err != nil {
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

// exec runs sql as a prepared statement with text parameters and returns the rows affected.
func (a *applier) exec(ctx context.Context, sql string, params [][]byte) (int64, error) {
	name, err := a.prepared(ctx, sql)
	if err != nil {
		return 0, err
	}
	if err := a.resolve(); err != nil {
		return 0, err
	}
	res := a.dest.PgConn().ExecPrepared(ctx, name, params, nil, nil).Read()
	if res.Err != nil {
		return 0, res.Err
	}
	return res.CommandTag.RowsAffected(), nil
}

func quote(s string) string { return pgx.Identifier{s}.Sanitize() }

func (a *applier) insert(ctx context.Context, m *pglogrepl.InsertMessage) error {
	rel, tm, ok, err := a.table(m.RelationID)
	if err != nil || !ok || !tm.Allows(spec.OpInsert) {
		return err
	}
	if !a.upsert {
		return a.batchInsert(ctx, m, rel, tm)
	}
	if err := a.flush(ctx); err != nil {
		return err
	}
	var cols, ph []string
	var params [][]byte
	for i, c := range m.Tuple.Columns {
		if c.DataType == pglogrepl.TupleDataTypeToast {
			continue // cannot happen for inserts; never write a placeholder
		}
		cols = append(cols, quote(tm.DestColumn(rel.Columns[i].Name)))
		params = append(params, value(c))
		ph = append(ph, fmt.Sprintf("$%d", len(params)))
	}
	sql := fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE VALUES (%s)",
		tm.Dest.Quoted(), strings.Join(cols, ", "), strings.Join(ph, ", "))
	if a.upsert {
		sql += upsertClause(rel, tm)
	}
	if _, err := a.exec(ctx, sql, params); err != nil {
		return fmt.Errorf("insert into %s key %s: %w (statement: %s)", tm.Dest, keyText(rel, m.Tuple), withDetail(err), sql)
	}
	a.counts.Inserts++
	return nil
}

// upsertClause turns an insert into an overwrite on the relation's key; without a key (REPLICA
// IDENTITY FULL) the row is inserted as is.
func upsertClause(rel *pglogrepl.RelationMessage, tm spec.TableMap) string {
	var keys, sets []string
	for _, col := range rel.Columns {
		name := quote(tm.DestColumn(col.Name))
		if col.Flags&1 == 1 && rel.ReplicaIdentity != 'f' {
			keys = append(keys, name)
		} else {
			sets = append(sets, name+" = EXCLUDED."+name)
		}
	}
	switch {
	case len(keys) == 0:
		return ""
	case len(sets) == 0:
		return " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO NOTHING"
	}
	return " ON CONFLICT (" + strings.Join(keys, ", ") + ") DO UPDATE SET " + strings.Join(sets, ", ")
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
// key columns of the new tuple. It starts numbering parameters after n.
func where(rel *pglogrepl.RelationMessage, tm spec.TableMap, old *pglogrepl.TupleData, newTuple *pglogrepl.TupleData, n int) (string, [][]byte, error) {
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
		name := quote(tm.DestColumn(col.Name))
		if c.DataType == pglogrepl.TupleDataTypeNull {
			conds = append(conds, name+" IS NULL")
			continue
		}
		params = append(params, c.Data)
		conds = append(conds, fmt.Sprintf("%s = $%d", name, n+len(params)))
	}
	if len(conds) == 0 {
		return "", nil, fmt.Errorf("%s has no replica identity: set a primary key or REPLICA IDENTITY FULL on the source", tm.Source)
	}
	return strings.Join(conds, " AND "), params, nil
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
	rel, tm, ok, err := a.table(m.RelationID)
	if err != nil || !ok || !tm.Allows(spec.OpUpdate) {
		return err
	}
	if m.OldTuple == nil {
		if batched, err := a.batchKeyed(ctx, m.RelationID, rel, tm, opUpdate, m.NewTuple); batched || err != nil {
			return err
		}
	}
	var sets []string
	var params [][]byte
	for i, c := range m.NewTuple.Columns {
		if c.DataType == pglogrepl.TupleDataTypeToast {
			continue // unchanged TOAST value: leave the destination's value alone
		}
		if m.OldTuple == nil && rel.Columns[i].Flags&1 == 1 {
			continue // key unchanged: it is in the WHERE clause (and may be GENERATED ALWAYS)
		}
		params = append(params, value(c))
		sets = append(sets, fmt.Sprintf("%s = $%d", quote(tm.DestColumn(rel.Columns[i].Name)), len(params)))
	}
	if len(sets) == 0 {
		return nil
	}
	cond, wparams, err := where(rel, tm, m.OldTuple, m.NewTuple, len(params))
	if err != nil {
		return err
	}
	params = append(params, wparams...)
	// ONLY: a change is for this table's own rows, not those of tables that inherit from it.
	sql := fmt.Sprintf("UPDATE ONLY %s SET %s WHERE %s", tm.Dest.Quoted(), strings.Join(sets, ", "), cond)
	key := m.OldTuple
	if key == nil {
		key = m.NewTuple
	}
	return a.queue(ctx, sql, params, queued{rel: m.RelationID, op: opUpdate, table: tm.Dest, key: keyText(rel, key), sql: sql})
}

func (a *applier) delete(ctx context.Context, m *pglogrepl.DeleteMessage) error {
	rel, tm, ok, err := a.table(m.RelationID)
	if err != nil || !ok || !tm.Allows(spec.OpDelete) {
		return err
	}
	if m.OldTuple != nil {
		if batched, err := a.batchKeyed(ctx, m.RelationID, rel, tm, opDelete, m.OldTuple); batched || err != nil {
			return err
		}
	}
	cond, params, err := where(rel, tm, m.OldTuple, nil, 0)
	if err != nil {
		return err
	}
	sql := fmt.Sprintf("DELETE FROM ONLY %s WHERE %s", tm.Dest.Quoted(), cond)
	if rel.ReplicaIdentity == 'f' {
		// Without a key, delete one matching row only: duplicates are distinct rows.
		sql = fmt.Sprintf("DELETE FROM ONLY %s WHERE ctid = (SELECT ctid FROM ONLY %s WHERE %s LIMIT 1)", tm.Dest.Quoted(), tm.Dest.Quoted(), cond)
	}
	return a.queue(ctx, sql, params, queued{rel: m.RelationID, op: opDelete, table: tm.Dest, key: keyText(rel, m.OldTuple), sql: sql})
}

func (a *applier) truncate(ctx context.Context, m *pglogrepl.TruncateMessage) error {
	if err := a.flush(ctx); err != nil {
		return err
	}
	var names []string
	for _, id := range m.RelationIDs {
		_, tm, ok, err := a.table(id)
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
	if _, err := a.dest.Exec(ctx, "TRUNCATE "+strings.Join(names, ", ")); err != nil {
		return fmt.Errorf("truncate %s: %w", strings.Join(names, ", "), err)
	}
	a.counts.Truncates++
	return nil
}
