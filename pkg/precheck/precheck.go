// Package precheck runs the checks a task must pass before anything is created. Every item has a
// stable id, a level, a result, a detail naming the objects concerned and a fix.
package precheck

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/spec"
)

// Levels.
const (
	Error   = "error"
	Warning = "warning"
	Info    = "info"
)

// Item is one precheck result.
type Item struct {
	ID     string `json:"id"`
	Level  string `json:"level"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Blocking reports whether the item stops the task: a failed error, or a failed warning the spec
// does not ignore.
func (it Item) Blocking(ignore []string) bool {
	if it.Passed {
		return false
	}
	switch it.Level {
	case Error:
		return true
	case Warning:
		return !slices.Contains(ignore, it.ID)
	}
	return false
}

// Failed returns the items that stop the task.
func Failed(items []Item, ignore []string) []Item {
	var out []Item
	for _, it := range items {
		if it.Blocking(ignore) {
			out = append(out, it)
		}
	}
	return out
}

// Run checks the task. It never returns an error for a failed check: the failure is an item.
func Run(ctx context.Context, open dbconn.Opener, s spec.Spec) []Item {
	var items []Item
	add := func(it Item) { items = append(items, it) }

	src, err := open.Connect(ctx, s.Source)
	add(connectItem("source_connect", s.Source, err))
	dst, derr := open.Connect(ctx, s.Destination)
	add(connectItem("dest_connect", s.Destination, derr))
	if src != nil {
		defer src.Close(context.WithoutCancel(ctx))
	}
	if dst != nil {
		defer dst.Close(context.WithoutCancel(ctx))
	}
	add(Item{
		ID: "source_db_name", Level: Error, Passed: !strings.Contains(s.Source.Database, "-"),
		Detail: fmt.Sprintf("source database %q", s.Source.Database),
		Fix:    "rename the database to a name without '-' (ALTER DATABASE ... RENAME TO ...)",
	})
	if src != nil {
		add(versionItem(ctx, "source_version", src, 100000, "the source must be PostgreSQL 10 or newer (pgoutput)"))
		if s.IncrementalSync() {
			add(walLevelItem(ctx, src))
		}
		tables, resolveErr := objectsItem(ctx, src, s, add)
		if resolveErr == nil && s.IncrementalSync() {
			add(primaryKeysItem(ctx, src, tables))
		}
		if resolveErr == nil && dst != nil && s.SchemaSync() {
			add(conflictItem(ctx, dst, s, tables))
		}
	}
	if dst != nil {
		add(versionItem(ctx, "dest_version", dst, 120000, "the destination must be PostgreSQL 12 or newer (or compatible)"))
		if s.IncrementalSync() {
			add(replicaRoleItem(ctx, dst))
		}
	}
	return items
}

func connectItem(id string, ep spec.Endpoint, err error) Item {
	it := Item{ID: id, Level: Error, Passed: err == nil, Detail: "connected to " + dbconn.Describe(ep)}
	if err != nil {
		it.Detail = err.Error()
		it.Fix = "check host, port, database, user and the password secret; the worker must reach the server"
	}
	return it
}

func versionItem(ctx context.Context, id string, conn *pgx.Conn, min int, fix string) Item {
	var num int
	var text string
	err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('server_version_num')::int, pg_catalog.version()`).Scan(&num, &text)
	if err != nil {
		return Item{ID: id, Level: Error, Detail: err.Error(), Fix: fix}
	}
	it := Item{ID: id, Level: Error, Passed: num >= min, Detail: text}
	if !it.Passed {
		it.Fix = fix
	}
	return it
}

func walLevelItem(ctx context.Context, conn *pgx.Conn) Item {
	var level string
	err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('wal_level')`).Scan(&level)
	it := Item{ID: "wal_level", Level: Error, Passed: err == nil && level == "logical", Detail: "wal_level is " + level}
	if err != nil {
		it.Detail = err.Error()
	}
	if !it.Passed {
		it.Fix = "ALTER SYSTEM SET wal_level = logical; then restart the source server"
	}
	return it
}

func objectsItem(ctx context.Context, conn *pgx.Conn, s spec.Spec, add func(Item)) ([]spec.TableMap, error) {
	existing, err := catalog.ListTables(ctx, conn)
	if err == nil {
		var tables []spec.TableMap
		tables, err = spec.Resolve(s.Objects, existing)
		if err == nil {
			add(Item{ID: "objects_exist", Level: Error, Passed: true, Detail: fmt.Sprintf("%d tables selected", len(tables))})
			return tables, nil
		}
	}
	add(Item{ID: "objects_exist", Level: Error, Detail: err.Error(), Fix: "correct the objects list, or create the missing objects on the source"})
	return nil, err
}

func primaryKeysItem(ctx context.Context, conn *pgx.Conn, tables []spec.TableMap) Item {
	var without []string
	for _, tm := range tables {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return Item{ID: "primary_keys", Level: Warning, Detail: err.Error()}
		}
		t, err := catalog.LoadTable(ctx, tx, tm.Source)
		_ = tx.Rollback(ctx)
		if err != nil {
			return Item{ID: "primary_keys", Level: Warning, Detail: err.Error()}
		}
		if t.Key() == nil && t.ReplicaIdentity != "f" {
			without = append(without, tm.Source.String())
		}
	}
	it := Item{ID: "primary_keys", Level: Warning, Passed: len(without) == 0, Detail: "every selected table has a primary key or a non-null unique key"}
	if len(without) > 0 {
		it.Detail = "tables without a primary key or non-null unique key: " + strings.Join(without, ", ")
		it.Fix = "add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL (slower apply); then list primary_keys in ignore_precheck"
	}
	return it
}

func conflictItem(ctx context.Context, conn *pgx.Conn, s spec.Spec, tables []spec.TableMap) Item {
	var conflicts []string
	for _, tm := range tables {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, tm.Dest.Quoted()).Scan(&exists); err != nil {
			return Item{ID: "conflicting_tables", Level: Error, Detail: err.Error()}
		}
		if exists {
			conflicts = append(conflicts, tm.Dest.String())
		}
	}
	level := Error
	if s.ConflictMode == spec.ConflictIgnore {
		level = Warning
	}
	it := Item{ID: "conflicting_tables", Level: level, Passed: len(conflicts) == 0, Detail: "no selected table exists on the destination"}
	if len(conflicts) > 0 {
		it.Detail = "tables already on the destination: " + strings.Join(conflicts, ", ")
		it.Fix = "drop or rename them on the destination, or map the tables to other names"
	}
	return it
}

func replicaRoleItem(ctx context.Context, conn *pgx.Conn) Item {
	it := Item{ID: "replica_role_privilege", Level: Error, Passed: true, Detail: "the destination account can SET session_replication_role = replica"}
	tx, err := conn.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, `SET LOCAL session_replication_role = replica`)
		_ = tx.Rollback(ctx)
	}
	if err != nil {
		it.Passed = false
		it.Detail = err.Error()
		it.Fix = "ALTER ROLE <user> SUPERUSER, or on PostgreSQL 15+: GRANT SET ON PARAMETER session_replication_role TO <user>"
	}
	return it
}
