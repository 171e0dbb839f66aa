// Package source is the source side of the change stream, usable without the apply side (by the
// precheck and the task's setup and release): the task's publication and replication slot, the
// replica identities it sets, the source's timeline history (admin.go, identity.go, timeline.go),
// and the Reader, which reads the slot's pgoutput stream, spools protocol 2's streamed
// transactions until their commit, decodes rows once, and hands everything to a Sink (reader.go,
// spool.go, decode.go).
package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
)

// EnsurePublication creates the publication name for exactly tables (with their row filters), or
// sets its table list if it exists already. What cannot be published is left out (see
// catalog.Unpublishable): unlogged tables (the precheck warns of them, the load copies them), and
// before 13 partitioned tables, whose partitions are in the list.
func EnsurePublication(ctx context.Context, conn *pgx.Conn, name, owner string, tables []spec.TableMap) error {
	exists, comment, err := publication(ctx, conn, name)
	if err != nil {
		return err
	}
	if err := checkOwner(name, owner, comment); err != nil {
		return err
	}
	unlogged, err := catalog.Unpublishable(ctx, conn, tables)
	if err != nil {
		return fmt.Errorf("publication %s: %w", name, err)
	}
	tables = slices.DeleteFunc(slices.Clone(tables), func(t spec.TableMap) bool { return unlogged[t.Source] })
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = t.Source.Quoted()
		if w := t.WhereSQL(); w != "" {
			list[i] += " WHERE " + w
		}
	}
	// The table a source older than 14 writes the schema-change events to stays published.
	var events bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, ddlcapture.EventsTable(name).Quoted()).Scan(&events); err != nil {
		return fmt.Errorf("publication %s: %w", name, err)
	}
	if events && exists {
		list = append(list, ddlcapture.EventsTable(name).Quoted())
	}
	pub := pgx.Identifier{name}.Sanitize()
	var stmt string
	switch {
	case !exists && len(tables) == 0:
		stmt = "CREATE PUBLICATION " + pub
	case !exists:
		stmt = "CREATE PUBLICATION " + pub + " FOR TABLE " + strings.Join(list, ", ")
	case len(tables) == 0:
		return nil
	default:
		stmt = "ALTER PUBLICATION " + pub + " SET TABLE " + strings.Join(list, ", ")
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("publication %s: %w", name, err)
	}
	if comment != owner {
		return setOwner(ctx, conn, name, owner)
	}
	return nil
}

// ClaimPublication writes owner into publication name's comment if it has none (a publication
// made before Skein wrote it), and fails if it belongs to another task.
func ClaimPublication(ctx context.Context, conn *pgx.Conn, name, owner string) error {
	exists, comment, err := publication(ctx, conn, name)
	if err != nil {
		return err
	}
	if err := checkOwner(name, owner, comment); err != nil || !exists || comment == owner {
		return err
	}
	return setOwner(ctx, conn, name, owner)
}

func setOwner(ctx context.Context, conn *pgx.Conn, name, owner string) error {
	if _, err := conn.Exec(ctx, "COMMENT ON PUBLICATION "+pgx.Identifier{name}.Sanitize()+" IS "+catalog.QuoteLiteral(owner)); err != nil {
		return fmt.Errorf("publication %s: %w", name, err)
	}
	return nil
}

// Owner is what a task's publication says of its owner (in its comment). Task names that differ
// only in '-' and '_' map to the same slot and publication name: the comment tells the tasks
// apart, so that one never uses or drops what the other created.
func Owner(task string) string { return ownerPrefix + task }

const ownerPrefix = "skein task "

// CheckOwner fails (permanently) if publication name exists and belongs to another task than
// owner. A publication without Skein's comment (made before Skein wrote it) passes.
func CheckOwner(ctx context.Context, conn *pgx.Conn, name, owner string) error {
	_, comment, err := publication(ctx, conn, name)
	if err != nil {
		return err
	}
	return checkOwner(name, owner, comment)
}

func checkOwner(name, owner, comment string) error {
	if other, ok := strings.CutPrefix(comment, ownerPrefix); ok && comment != owner {
		return errclass.Permanent(fmt.Errorf("the replication slot and publication %s belong to task %q (task names that differ only in '-' and '_' share them): give this task another name", name, other))
	}
	return nil
}

// publication reports whether publication name exists, and its comment.
func publication(ctx context.Context, conn *pgx.Conn, name string) (bool, string, error) {
	var comment *string
	err := conn.QueryRow(ctx, `SELECT pg_catalog.obj_description(p.oid, 'pg_publication') FROM pg_catalog.pg_publication p WHERE p.pubname = $1`, name).Scan(&comment)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, "", nil
	case err != nil:
		return false, "", fmt.Errorf("publication %s: %w", name, err)
	case comment == nil:
		return true, "", nil
	}
	return true, *comment, nil
}

// SlotState describes a replication slot on the source (api.SlotState).
type SlotState = api.SlotState

// Slot reads the state of slot name.
func Slot(ctx context.Context, conn *pgx.Conn, name string) (SlotState, error) {
	var st SlotState
	var flush, cur *string
	err := conn.QueryRow(ctx, `
SELECT true, active, confirmed_flush_lsn::pg_catalog.text, pg_catalog.pg_current_wal_lsn()::pg_catalog.text
FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, name).Scan(&st.Exists, &st.Active, &flush, &cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return SlotState{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("slot %s: %w", name, err)
	}
	if flush != nil {
		lsn, _ := pglogrepl.ParseLSN(*flush)
		st.ConfirmedFlush = api.LSN(lsn)
	}
	if cur != nil {
		lsn, _ := pglogrepl.ParseLSN(*cur)
		st.CurrentWAL = api.LSN(lsn)
	}
	return st, nil
}

// CurrentWAL returns the source's current WAL insert position: every transaction committed
// before the call ends before it. Not the write position (pg_current_wal_lsn): an asynchronous
// commit (synchronous_commit = off) returns before its WAL is written, and a catch-up or cutover
// that stopped at the write position could end before that transaction.
func CurrentWAL(ctx context.Context, conn *pgx.Conn) (pglogrepl.LSN, error) {
	var s string
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_insert_lsn()::pg_catalog.text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("read current WAL position: %w", err)
	}
	return pglogrepl.ParseLSN(s)
}

// HeartbeatPrefix is the prefix of the logical decoding messages Skein writes into the source's
// WAL while the selected tables are quiet.
const HeartbeatPrefix = "skein-heartbeat"

// EmitHeartbeat writes a small transactional logical decoding message into the source's WAL. It
// reaches the task's stream as a transaction of its own, so the slot's confirmed position and the
// measured lag advance even when none of the selected tables change while the rest of the
// database writes.
func EmitHeartbeat(ctx context.Context, conn *pgx.Conn, task string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_catalog.pg_logical_emit_message(true, $1::pg_catalog.text, $2::pg_catalog.text)`,
		HeartbeatPrefix, task); err != nil {
		return fmt.Errorf("emit heartbeat into the source WAL: %w", err)
	}
	return nil
}

// SlotSnapshot is api.SlotSnapshot.
type SlotSnapshot = api.SlotSnapshot

// CreateSlot creates the logical slot name (pgoutput) on a replication connection and exports a
// snapshot. The connection must stay open, and idle, for the snapshot to stay importable.
func CreateSlot(ctx context.Context, repl *pgconn.PgConn, name string) (SlotSnapshot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return SlotSnapshot{}, fmt.Errorf("create replication slot %s: %w", name, err)
	}
	return SlotSnapshot{SnapshotName: res.SnapshotName, ConsistentPoint: res.ConsistentPoint}, nil
}

// CreateTemporarySlot creates a temporary logical slot, dropped when repl closes, with an exported
// snapshot: a snapshot whose consistent point is known exactly.
func CreateTemporarySlot(ctx context.Context, repl *pgconn.PgConn, name string) (SlotSnapshot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return SlotSnapshot{}, fmt.Errorf("create temporary replication slot %s: %w", name, err)
	}
	return SlotSnapshot{SnapshotName: res.SnapshotName, ConsistentPoint: res.ConsistentPoint}, nil
}

// DropSlot drops slot name if it exists, first ending the walsender that holds it.
func DropSlot(ctx context.Context, conn *pgx.Conn, name string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pid *int32
		err := conn.QueryRow(ctx, `SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, name).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		if pid != nil {
			if _, err := conn.Exec(ctx, `SELECT pg_catalog.pg_terminate_backend($1)`, *pid); err != nil {
				return fmt.Errorf("drop slot %s: end walsender %d: %w", name, *pid, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("drop slot %s: still in use by process %d", name, *pid)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		_, err = conn.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot($1)`, name)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "55006" || pgErr.Code == "42704") && time.Now().Before(deadline) {
			continue // became active again, or vanished: look again
		}
		if err != nil {
			return fmt.Errorf("drop slot %s: %w", name, err)
		}
		return nil
	}
}

// DropPublication drops publication name if it exists.
func DropPublication(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("drop publication %s: %w", name, err)
	}
	return nil
}

// CheckUnknownRelation decides about the changes of relation relID (named name in the change
// stream), which the task's selection does not hold (an UnknownRelation). Gone from the source, or
// no longer in the publication (removed from the selection), its changes are skipped (nil). Still
// in the publication, it is a table the task should apply but cannot: a partition created or
// attached, or a table renamed, after the task started. Its changes are not skipped: the error
// names it and stops the task.
func CheckUnknownRelation(ctx context.Context, conn *pgx.Conn, publication string, relID uint32, name spec.QName) error {
	var current, parent string
	var published bool
	err := conn.QueryRow(ctx, `
SELECT pg_catalog.format('%s.%s', n.nspname, c.relname),
       EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables p WHERE p.pubname = $2 AND p.schemaname = n.nspname AND p.tablename = c.relname),
       COALESCE((SELECT pg_catalog.format('%s.%s', pn.nspname, pc.relname) FROM pg_catalog.pg_inherits i
                 JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
                 WHERE i.inhrelid = c.oid LIMIT 1), '')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1`, relID, publication).Scan(&current, &published, &parent)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil // dropped since
	case err != nil:
		return fmt.Errorf("look up relation %s (OID %d) of the change stream: %w", name, relID, err)
	case !published:
		return nil
	}
	what := "a table renamed or added after the task started"
	if parent != "" {
		what = "a partition of " + parent + " created or attached after the task started"
	}
	now := ""
	if current != name.String() {
		now = ", now named " + current
	}
	return errclass.Permanent(fmt.Errorf("changes of %s (OID %d%s) arrive in the task's stream, but the table is not in the task's table list (%s): "+
		"Skein does not apply schema changes while streaming yet, and does not skip them: release the task and start it again to include the table", name, relID, now, what))
}
