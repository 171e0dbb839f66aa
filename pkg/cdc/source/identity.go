package source

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/sourceschema"
	"github.com/skein-dts/skein/pkg/spec"
)

// A table without a usable key (or with a row filter) needs REPLICA IDENTITY FULL on the source
// while a task streams it, and every update then writes the whole old row to the WAL. Skein
// records what each table's replica identity was, per slot, in skein.replica_identities on the
// source, and restores it when the last slot that needed FULL is released.

const identitiesTable = `"skein"."replica_identities"`

// SetFullIdentity sets REPLICA IDENTITY FULL on table for slot, recording in the same transaction
// what it was. A table that is FULL already is recorded only when another slot of Skein's made it
// so (its original identity is copied): a FULL the user chose stays theirs.
func SetFullIdentity(ctx context.Context, conn *pgx.Conn, slot string, table spec.QName) error {
	if err := sourceschema.Ensure(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+identitiesTable+` (
  slot text NOT NULL, relid oid NOT NULL, previous "char" NOT NULL, index_name text,
  PRIMARY KEY (slot, relid))`); err != nil {
		return fmt.Errorf("record replica identities: %w", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	var relid uint32
	var current string
	var index *string
	err = tx.QueryRow(ctx, `SELECT c.oid, c.relreplident::pg_catalog.text, (SELECT ic.relname::pg_catalog.text FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid AND i.indisreplident)
FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)`, table.Quoted()).Scan(&relid, &current, &index)
	if err != nil {
		return fmt.Errorf("read the replica identity of %s: %w", table, err)
	}
	if current == "f" {
		_, err = tx.Exec(ctx, `INSERT INTO `+identitiesTable+` (slot, relid, previous, index_name)
SELECT $1, relid, previous, index_name FROM `+identitiesTable+` WHERE relid = $2 LIMIT 1 ON CONFLICT DO NOTHING`, slot, relid)
	} else {
		_, err = tx.Exec(ctx, `INSERT INTO `+identitiesTable+` (slot, relid, previous, index_name) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			slot, relid, current, index)
		if err == nil {
			_, err = tx.Exec(ctx, "ALTER TABLE "+table.Quoted()+" REPLICA IDENTITY FULL")
		}
	}
	if err != nil {
		return fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", table, err)
	}
	return tx.Commit(ctx)
}

// RestoreIdentities gives back the replica identity of each table slot set to FULL, unless
// another slot still needs it or the table is no longer FULL (someone changed it since), and
// forgets slot's records; the record table goes with the last of them. It returns the tables
// restored, as "table: identity".
func RestoreIdentities(ctx context.Context, conn *pgx.Conn, slot string) ([]string, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regclass('`+identitiesTable+`') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := conn.Query(ctx, `SELECT r.relid::pg_catalog.regclass::pg_catalog.text, r.previous::pg_catalog.text, r.index_name
FROM `+identitiesTable+` r JOIN pg_catalog.pg_class c ON c.oid = r.relid
WHERE r.slot = $1 AND c.relreplident = 'f'
  AND NOT EXISTS (SELECT 1 FROM `+identitiesTable+` o WHERE o.relid = r.relid AND o.slot <> r.slot)`, slot)
	if err != nil {
		return nil, fmt.Errorf("read the replica identities to restore: %w", err)
	}
	type restore struct {
		table, previous string
		index           *string
	}
	todo, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (restore, error) {
		var x restore
		return x, r.Scan(&x.table, &x.previous, &x.index)
	})
	if err != nil {
		return nil, fmt.Errorf("read the replica identities to restore: %w", err)
	}
	var restored []string
	for _, r := range todo {
		clause := map[string]string{"d": "DEFAULT", "n": "NOTHING"}[r.previous]
		if r.previous == "i" && r.index != nil {
			clause = "USING INDEX " + pgx.Identifier{*r.index}.Sanitize()
		}
		if clause == "" {
			clause = "DEFAULT"
		}
		// regclass text is quoted and qualified as needed.
		if _, err := conn.Exec(ctx, "ALTER TABLE "+r.table+" REPLICA IDENTITY "+clause); err != nil {
			return restored, fmt.Errorf("restore the replica identity of %s (%s): %w", r.table, clause, err)
		}
		restored = append(restored, r.table+": "+clause)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM `+identitiesTable+` WHERE slot = $1`, slot); err != nil {
		return restored, fmt.Errorf("forget the replica identities of %s: %w", slot, err)
	}
	var left bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+identitiesTable+`)`).Scan(&left); err != nil {
		return restored, err
	}
	if !left {
		if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS `+identitiesTable); err != nil {
			return restored, fmt.Errorf("drop %s: %w", identitiesTable, err)
		}
		if err := sourceschema.DropIfLast(ctx, conn); err != nil {
			return restored, err
		}
	}
	return restored, nil
}
