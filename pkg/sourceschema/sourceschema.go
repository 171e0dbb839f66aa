// Package sourceschema manages the schema "skein" on a source, where Skein keeps what it needs
// there (the schema-change capture functions, the replica identities it changed): created
// marked as Skein's when missing, dropped with the last thing in it, left alone when it was there
// before Skein.
package sourceschema

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/catalog"
)

// Name is the source schema's name.
const Name = "skein"

// Comment marks the source schema "skein" as created by Skein.
const Comment = "created by Skein (schema-change capture, the replica identities it changed); dropped when the last task using it is released"

// Ensure creates the schema "skein" with Comment when it does not exist.
func Ensure(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `DO $skein$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'skein') THEN
    CREATE SCHEMA "skein";
    COMMENT ON SCHEMA "skein" IS `+catalog.QuoteLiteral(Comment)+`;
  END IF;
END $skein$`)
	if err != nil {
		return fmt.Errorf("create schema skein on the source: %w", err)
	}
	return nil
}

// DropIfLast drops the schema "skein" when Skein created it and nothing is left in it.
func DropIfLast(ctx context.Context, conn *pgx.Conn) error {
	var ours bool
	err := conn.QueryRow(ctx, `SELECT COALESCE(pg_catalog.obj_description(n.oid, 'pg_namespace') = $1, false) AND NOT EXISTS (
  SELECT 1 FROM pg_catalog.pg_depend d WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = n.oid)
FROM pg_catalog.pg_namespace n WHERE n.nspname = 'skein'`, Comment).Scan(&ours)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !ours) {
		return nil
	}
	if err == nil {
		_, err = conn.Exec(ctx, `DROP SCHEMA IF EXISTS "skein" RESTRICT`)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "2BP01" { // something was created in it meanwhile
		return nil
	}
	if err != nil {
		return fmt.Errorf("drop schema skein on the source: %w", err)
	}
	return nil
}
