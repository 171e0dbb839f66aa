// Package bookkeeping owns Skein's tables in the destination's "skein" schema: the applied LSN of
// each task (written in the same transaction as the data it covers) and the chunks the full load
// has committed (written in the same transaction as the chunk's rows).
package bookkeeping

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Execer runs a statement: a *pgx.Conn or a pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ExecQuerier runs statements and reads rows: a *pgx.Conn or a pgx.Tx.
type ExecQuerier interface {
	Execer
	Querier
}

// Ensure creates the bookkeeping schema and tables if they are missing.
func Ensure(ctx context.Context, db Execer) error {
	for _, stmt := range []string{
		`CREATE SCHEMA IF NOT EXISTS "skein"`,
		`CREATE TABLE IF NOT EXISTS "skein"."progress" (
  "task" pg_catalog.text PRIMARY KEY,
  "lsn" pg_catalog.pg_lsn NOT NULL,
  "updated_at" pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
  "timeline" pg_catalog.int4 NOT NULL DEFAULT 0)`,
		`CREATE TABLE IF NOT EXISTS "skein"."chunks" (
  "task" pg_catalog.text NOT NULL,
  "chunk" pg_catalog.text NOT NULL,
  "rows" pg_catalog.int8 NOT NULL,
  "bytes" pg_catalog.int8 NOT NULL,
  "done_at" pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
  PRIMARY KEY ("task", "chunk"))`,
		`CREATE TABLE IF NOT EXISTS "skein"."relations" (
  "task" pg_catalog.text NOT NULL,
  "relid" pg_catalog.oid NOT NULL,
  "mapping" pg_catalog.jsonb NOT NULL,
  "state" pg_catalog.jsonb NOT NULL,
  PRIMARY KEY ("task", "relid"))`,
		`CREATE TABLE IF NOT EXISTS "skein"."repairs" (
  "task" pg_catalog.text NOT NULL,
  "repair" pg_catalog.text NOT NULL,
  "source_table" pg_catalog.text NOT NULL,
  "targets" pg_catalog.jsonb NOT NULL,
  "result" pg_catalog.jsonb,
  PRIMARY KEY ("task", "repair", "source_table"))`,
	} {
		if _, err := db.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create bookkeeping tables: %w", err)
		}
	}
	// Progress rows of older versions have no timeline. Altered only when it is missing: an
	// ALTER TABLE would wait for every task's open apply transaction on this destination.
	var hasTimeline bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
WHERE attrelid = '"skein"."progress"'::pg_catalog.regclass AND attname = 'timeline' AND NOT attisdropped)`).Scan(&hasTimeline); err != nil {
		return fmt.Errorf("read bookkeeping tables: %w", err)
	}
	if !hasTimeline {
		if _, err := db.Exec(ctx, `ALTER TABLE "skein"."progress" ADD COLUMN IF NOT EXISTS "timeline" pg_catalog.int4 NOT NULL DEFAULT 0`); err != nil {
			return fmt.Errorf("add the timeline to the bookkeeping: %w", err)
		}
	}
	return nil
}

// ChunkDone reports whether chunk was committed already, with its counts.
func ChunkDone(ctx context.Context, db Execer, task, chunk string) (done bool, rows, bytes int64, err error) {
	err = db.QueryRow(ctx, chunkDoneSQL, task, chunk).Scan(&rows, &bytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, 0, 0, nil
	}
	if err != nil {
		return false, 0, 0, fmt.Errorf("read chunk %s: %w", chunk, err)
	}
	return true, rows, bytes, nil
}

// chunkDoneSQL reads a chunk's row ($1 task, $2 chunk).
const chunkDoneSQL = `SELECT "rows", "bytes" FROM "skein"."chunks" WHERE "task" = $1 AND "chunk" = $2`

// QueueChunkDone adds ChunkDone's query to a pipeline; found gets its answer.
func QueueChunkDone(b *pgx.Batch, task, chunk string, found func(done bool, rows, bytes int64)) {
	b.Queue(chunkDoneSQL, task, chunk).QueryRow(func(row pgx.Row) error {
		var rows, bytes int64
		err := row.Scan(&rows, &bytes)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			found(false, 0, 0)
		case err != nil:
			return fmt.Errorf("read chunk %s: %w", chunk, err)
		default:
			found(true, rows, bytes)
		}
		return nil
	})
}

// QueueLoadGeneration adds LoadGeneration's query to a pipeline; found gets its answer.
func QueueLoadGeneration(b *pgx.Batch, task, table string, found func(generation int)) {
	QueueChunkDone(b, task, table+resetSuffix, func(_ bool, gen, _ int64) { found(int(gen)) })
}

// MarkChunkDone records chunk as committed; call it in the transaction that holds its rows.
func MarkChunkDone(ctx context.Context, db Execer, task, chunk string, rows, bytes int64) error {
	_, err := db.Exec(ctx, `INSERT INTO "skein"."chunks" ("task", "chunk", "rows", "bytes") VALUES ($1, $2, $3, $4)`,
		task, chunk, rows, bytes)
	if err != nil {
		return fmt.Errorf("record chunk %s: %w", chunk, err)
	}
	return nil
}

// resetSuffix ends the id of a table's reset marker in "skein"."chunks": "<table>#reset", which
// no chunk id ("<table>#<n>") can equal. Its rows column holds the table's load generation.
const resetSuffix = "#reset"

// MarkReset records that the load of table (its source name) started over as generation gen:
// chunks of older generations still running must not commit. Call it in the transaction that
// empties the table, after ForgetChunks.
func MarkReset(ctx context.Context, db Execer, task, table string, gen int) error {
	_, err := db.Exec(ctx, `INSERT INTO "skein"."chunks" ("task", "chunk", "rows", "bytes") VALUES ($1, $2, $3, 0)
ON CONFLICT ("task", "chunk") DO UPDATE SET "rows" = GREATEST("chunks"."rows", EXCLUDED."rows")`, task, table+resetSuffix, gen)
	if err != nil {
		return fmt.Errorf("record reset of %s: %w", table, err)
	}
	return nil
}

// LoadGeneration returns the load generation of table (its source name): 0 until a reset.
func LoadGeneration(ctx context.Context, db Execer, task, table string) (int, error) {
	_, gen, _, err := ChunkDone(ctx, db, task, table+resetSuffix)
	return int(gen), err
}

// ForgetChunks deletes the task's chunk-done rows whose chunk id starts with prefix.
func ForgetChunks(ctx context.Context, db Execer, task, prefix string) error {
	_, err := db.Exec(ctx, `DELETE FROM "skein"."chunks" WHERE "task" = $1 AND pg_catalog.left("chunk", pg_catalog.length($2)) = $2`,
		task, prefix)
	if err != nil {
		return fmt.Errorf("forget chunks %s*: %w", prefix, err)
	}
	return nil
}

// Position is where a task's applied changes end: the source LSN and the source's timeline then
// (0: not known, a row of an older version).
type Position struct {
	LSN      pglogrepl.LSN
	Timeline int32
}

// AppliedPosition returns the task's applied position, zero if none.
func AppliedPosition(ctx context.Context, db Execer, task string) (Position, error) {
	var s string
	var p Position
	err := db.QueryRow(ctx, `SELECT "lsn"::pg_catalog.text, "timeline" FROM "skein"."progress" WHERE "task" = $1`, task).Scan(&s, &p.Timeline)
	if errors.Is(err, pgx.ErrNoRows) {
		return Position{}, nil
	}
	if err != nil {
		return Position{}, fmt.Errorf("read applied LSN: %w", err)
	}
	p.LSN, err = pglogrepl.ParseLSN(s)
	return p, err
}

// AppliedSQL records a task's applied LSN ($1 the task, $2 the LSN, read on the source's timeline
// $3), with AppliedParams; send it in the destination transaction that holds the changes.
const AppliedSQL = `INSERT INTO "skein"."progress" ("task", "lsn", "timeline") VALUES ($1, $2::pg_catalog.pg_lsn, $3::pg_catalog.int4)
ON CONFLICT ("task") DO UPDATE SET "lsn" = EXCLUDED."lsn", "timeline" = EXCLUDED."timeline", "updated_at" = pg_catalog.now()`

// AppliedParams are AppliedSQL's parameters in text format.
func AppliedParams(task string, lsn pglogrepl.LSN, timeline int32) [][]byte {
	return [][]byte{[]byte(task), []byte(lsn.String()), []byte(strconv.FormatInt(int64(timeline), 10))}
}

// LaneTask is the progress row's key of one lane of a task's parallel apply: lane (0-based) of
// lanes. Each lane records the last source transaction it committed a part of.
func LaneTask(task string, lane, lanes int) string {
	return fmt.Sprintf("%s#lane%d/%d", task, lane, lanes)
}

// LaneRow is a lane's recorded position: everything of the lane's part of the source
// transactions committed at or before LSN is applied.
type LaneRow struct {
	Lane, Lanes int
	LSN         pglogrepl.LSN
}

// LaneRows drops the task's lane rows at or below its applied position (through; they say
// nothing more than it does) and returns the others.
func LaneRows(ctx context.Context, db ExecQuerier, task string, through pglogrepl.LSN) ([]LaneRow, error) {
	const lanePrefix = `pg_catalog.left("task", pg_catalog.length($1) + 5) = $1 || '#lane'`
	if _, err := db.Exec(ctx, `DELETE FROM "skein"."progress" WHERE `+lanePrefix+` AND "lsn" <= $2::pg_catalog.pg_lsn`, task, through.String()); err != nil {
		return nil, fmt.Errorf("drop the lane positions: %w", err)
	}
	rows, err := db.Query(ctx, `SELECT pg_catalog.substr("task", pg_catalog.length($1) + 6), "lsn"::pg_catalog.text FROM "skein"."progress" WHERE `+lanePrefix, task)
	if err != nil {
		return nil, fmt.Errorf("read the lane positions: %w", err)
	}
	var out []LaneRow
	for rows.Next() {
		var key, lsn string
		if err := rows.Scan(&key, &lsn); err != nil {
			return nil, fmt.Errorf("read the lane positions: %w", err)
		}
		var r LaneRow
		if _, err := fmt.Sscanf(key, "%d/%d", &r.Lane, &r.Lanes); err != nil || r.Lanes < 1 || r.Lane < 0 || r.Lane >= r.Lanes {
			return nil, fmt.Errorf("read the lane positions: %q is not a lane of task %s", key, task)
		}
		if r.LSN, err = pglogrepl.ParseLSN(lsn); err != nil {
			return nil, fmt.Errorf("read the lane positions: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// MeetLanes records that every lane of the task's parallel apply has applied everything through
// lsn (on the source's timeline): the task's position moves there and its lane rows, which then
// say nothing more, are dropped, in one transaction.
func MeetLanes(ctx context.Context, db *pgx.Conn, task string, lsn pglogrepl.LSN, timeline int32) error {
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, AppliedSQL, task, lsn.String(), timeline); err != nil {
			return err
		}
		_, err := LaneRows(ctx, tx, task, lsn)
		return err
	})
	if err != nil {
		return fmt.Errorf("record where the apply lanes meet (%s): %w", lsn, err)
	}
	return nil
}

// Drop removes the task's rows, and the schema once no task uses it.
func Drop(ctx context.Context, db Execer, task string) error {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT pg_catalog.to_regclass('"skein"."progress"') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("drop bookkeeping: %w", err)
	}
	if !exists {
		return nil
	}
	for _, stmt := range []string{
		`DELETE FROM "skein"."progress" WHERE "task" = $1 OR pg_catalog.left("task", pg_catalog.length($1) + 5) = $1 || '#lane'`,
		`DELETE FROM "skein"."chunks" WHERE "task" = $1`,
		`DELETE FROM "skein"."relations" WHERE "task" = $1`,
	} {
		if _, err := db.Exec(ctx, stmt, task); err != nil {
			return fmt.Errorf("drop bookkeeping: %w", err)
		}
	}
	// Destinations set up before repairs existed have no such table.
	var repairs bool
	if err := db.QueryRow(ctx, `SELECT pg_catalog.to_regclass('"skein"."repairs"') IS NOT NULL`).Scan(&repairs); err != nil {
		return fmt.Errorf("drop bookkeeping: %w", err)
	}
	if repairs {
		if _, err := db.Exec(ctx, `DELETE FROM "skein"."repairs" WHERE "task" = $1`, task); err != nil {
			return fmt.Errorf("drop bookkeeping: %w", err)
		}
	}
	var others bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM "skein"."progress") OR EXISTS (SELECT 1 FROM "skein"."chunks")`).Scan(&others); err != nil {
		return fmt.Errorf("drop bookkeeping: %w", err)
	}
	if !others {
		if _, err := db.Exec(ctx, `DROP SCHEMA "skein" CASCADE`); err != nil {
			return fmt.Errorf("drop bookkeeping schema: %w", err)
		}
	}
	return nil
}

// Relation is a source table as the task's change apply last applied its schema: its mapping
// and its state (ddlcapture.Table), both as JSON. Change apply turns the difference between this
// state and a schema-change event's into destination DDL, and records the new state in the same
// destination transaction.
type Relation struct {
	RelID   uint32
	Mapping []byte
	State   []byte
}

// SaveRelation records (or replaces) the task's state of a source table.
func SaveRelation(ctx context.Context, db Execer, task string, r Relation) error {
	_, err := db.Exec(ctx, `INSERT INTO "skein"."relations" ("task", "relid", "mapping", "state") VALUES ($1, $2, $3, $4)
ON CONFLICT ("task", "relid") DO UPDATE SET "mapping" = EXCLUDED."mapping", "state" = EXCLUDED."state"`, task, r.RelID, string(r.Mapping), string(r.State))
	if err != nil {
		return fmt.Errorf("record the schema of relation %d: %w", r.RelID, err)
	}
	return nil
}

// SaveRelations records (or replaces) the task's state of many source tables, a thousand per
// statement (a task of thousands of tables would otherwise wait for a round trip per table).
func SaveRelations(ctx context.Context, db Execer, task string, rels []Relation) error {
	for start := 0; start < len(rels); start += 1000 {
		part := rels[start:min(start+1000, len(rels))]
		ids := make([]uint32, len(part))
		mappings, states := make([]string, len(part)), make([]string, len(part))
		for i, r := range part {
			ids[i], mappings[i], states[i] = r.RelID, string(r.Mapping), string(r.State)
		}
		if _, err := db.Exec(ctx, `INSERT INTO "skein"."relations" ("task", "relid", "mapping", "state")
SELECT $1, r.relid, r.mapping::pg_catalog.jsonb, r.state::pg_catalog.jsonb
FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.oid[]), pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[])) AS r(relid, mapping, state)
ON CONFLICT ("task", "relid") DO UPDATE SET "mapping" = EXCLUDED."mapping", "state" = EXCLUDED."state"`, task, ids, mappings, states); err != nil {
			return fmt.Errorf("record the schema of relations %d and %d more: %w", part[0].RelID, len(part)-1, err)
		}
	}
	return nil
}

// ForgetRelation deletes the task's state of a source table (dropped, or left the selection).
func ForgetRelation(ctx context.Context, db Execer, task string, relID uint32) error {
	if _, err := db.Exec(ctx, `DELETE FROM "skein"."relations" WHERE "task" = $1 AND "relid" = $2`, task, relID); err != nil {
		return fmt.Errorf("forget the schema of relation %d: %w", relID, err)
	}
	return nil
}

// Querier reads rows: a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Relations returns the task's recorded source tables.
func Relations(ctx context.Context, db Querier, task string) ([]Relation, error) {
	rows, err := db.Query(ctx, `SELECT "relid", "mapping"::pg_catalog.text, "state"::pg_catalog.text FROM "skein"."relations" WHERE "task" = $1 ORDER BY "relid"`, task)
	if err != nil {
		return nil, fmt.Errorf("read the task's table schemas: %w", err)
	}
	var out []Relation
	var r Relation
	var mapping, state string
	if _, err := pgx.ForEachRow(rows, []any{&r.RelID, &mapping, &state}, func() error {
		out = append(out, Relation{RelID: r.RelID, Mapping: []byte(mapping), State: []byte(state)})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the task's table schemas: %w", err)
	}
	return out, nil
}

// RepairTargets is one table's part of a repair (pkg/repair): what a verification found to
// differ, kept on the destination (never in the workflow's history: keys are row values), and,
// once the repair committed, what it did.
type RepairTargets struct {
	Table   string // the source table, spec.QName.String()
	Targets []byte // JSON
	Result  []byte // JSON; nil until the repair committed
}

// SaveRepair records the targets of a new repair of the task and forgets its earlier repairs.
func SaveRepair(ctx context.Context, db Execer, task, repair string, tables []RepairTargets) error {
	if _, err := db.Exec(ctx, `DELETE FROM "skein"."repairs" WHERE "task" = $1 AND "repair" <> $2`, task, repair); err != nil {
		return fmt.Errorf("record the repair: %w", err)
	}
	for _, t := range tables {
		if _, err := db.Exec(ctx, `INSERT INTO "skein"."repairs" ("task", "repair", "source_table", "targets") VALUES ($1, $2, $3, $4)
ON CONFLICT ("task", "repair", "source_table") DO UPDATE SET "targets" = EXCLUDED."targets", "result" = NULL`, task, repair, t.Table, string(t.Targets)); err != nil {
			return fmt.Errorf("record the repair of %s: %w", t.Table, err)
		}
	}
	return nil
}

// Repair reads a repair's tables, in the order of their names.
func Repair(ctx context.Context, db ExecQuerier, task, repair string) ([]RepairTargets, error) {
	rows, err := db.Query(ctx, `SELECT "source_table", "targets"::pg_catalog.text, "result"::pg_catalog.text FROM "skein"."repairs"
WHERE "task" = $1 AND "repair" = $2 ORDER BY 1`, task, repair)
	if err != nil {
		return nil, fmt.Errorf("read the repair: %w", err)
	}
	defer rows.Close()
	var out []RepairTargets
	for rows.Next() {
		var t RepairTargets
		var targets string
		var result *string
		if err := rows.Scan(&t.Table, &targets, &result); err != nil {
			return nil, fmt.Errorf("read the repair: %w", err)
		}
		t.Targets = []byte(targets)
		if result != nil {
			t.Result = []byte(*result)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// MarkRepaired records what the repair of a table did, in the transaction that did it.
func MarkRepaired(ctx context.Context, db Execer, task, repair, table string, result []byte) error {
	if _, err := db.Exec(ctx, `UPDATE "skein"."repairs" SET "result" = $4 WHERE "task" = $1 AND "repair" = $2 AND "source_table" = $3`,
		task, repair, table, string(result)); err != nil {
		return fmt.Errorf("record the repair of %s: %w", table, err)
	}
	return nil
}
