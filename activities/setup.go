package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/sdk/activity"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/fullload"
	"github.com/skein-dts/skein/pkg/precheck"
	"github.com/skein-dts/skein/pkg/spec"
)

// Precheck runs the precheck items. While a server cannot be reached or drops its connections,
// it checks again for PrecheckOptions.Settle (30 s): a restart or a network blip does not fail a
// task at its start, and a server that stays away (a wrong host or port) fails the precheck
// after it.
func (a *Activities) Precheck(ctx context.Context, s spec.Spec) ([]precheck.Item, error) {
	stop := heartbeatEvery(ctx, 10*time.Second, func() any { return nil })
	defer stop()
	log := a.logger(ctx)
	settle := a.PrecheckOptions.Settle
	if settle == 0 {
		settle = 30 * time.Second
	}
	deadline := time.Now().Add(settle)
	for wait := time.Second; ; wait *= 2 {
		items, transient := precheck.Run(ctx, a.Open, s, a.PrecheckOptions)
		failed := api.Failed(items, s.IgnorePrecheck)
		if len(failed) == 0 || !transient || time.Now().Add(wait).After(deadline) {
			log.Info("precheck done", zap.Int("items", len(items)), zap.Int("blocking", len(failed)))
			return items, nil
		}
		log.Info("precheck could not reach a server: checking again", zap.String("item", failed[0].ID), zap.Duration("in", wait))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// ResolveTables expands the spec's objects into the selected tables, with their row estimates.
func (a *Activities) ResolveTables(ctx context.Context, s spec.Spec) ([]spec.TableMap, error) {
	conn, err := a.Open.Connect(ctx, s.Source)
	if err != nil {
		return nil, classify(ctx, err)
	}
	defer closeAll(ctx, conn)
	existing, err := catalog.ListTables(ctx, conn)
	if err != nil {
		return nil, classify(ctx, err)
	}
	tables, err := spec.Resolve(s.Objects, existing)
	if err == nil {
		tables, err = catalog.AddPartitions(ctx, conn, s.Objects, tables)
	}
	if err != nil {
		return nil, classify(ctx, errclass.Permanent(err))
	}
	return tables, nil
}

// PreparePublication sets REPLICA IDENTITY FULL on selected tables without a usable key (unless
// the spec ignores the replica_identity precheck item: once published, their updates and deletes
// would fail on the source) and creates (or updates) the task's publication.
func (a *Activities) PreparePublication(ctx context.Context, s spec.Spec, tables []spec.TableMap) error {
	conn, err := a.Open.Connect(ctx, s.Source)
	if err != nil {
		return classify(ctx, err)
	}
	defer closeAll(ctx, conn)
	if !slices.Contains(s.IgnorePrecheck, "replica_identity") {
		tx, err := catalog.BeginRead(ctx, conn, "")
		if err != nil {
			return classify(ctx, err)
		}
		defs, err := catalog.LoadTables(ctx, tx, tables)
		_ = tx.Rollback(ctx)
		if err != nil {
			return classify(ctx, err)
		}
		for i, t := range defs {
			// A row filter is evaluated on the old row of updates and deletes: it needs all of it.
			filtered := tables[i].Where != "" && t.ReplicaIdentity != "f"
			if precheck.NeedsFullIdentity(t) || filtered {
				// Recorded on the source, so that release gives the table its identity back.
				err := source.SetFullIdentity(ctx, conn, s.SlotName(), t.Name)
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "42501" {
					// The task's user may not create Skein's schema on the source: set FULL
					// without the record, and say that release will leave it.
					a.logger(ctx).Warn("replica identity set to FULL without a record: release will not restore it", zap.Stringer("table", t.Name), zap.Error(err))
					_, err = conn.Exec(ctx, "ALTER TABLE "+t.Name.Quoted()+" REPLICA IDENTITY FULL")
				}
				if err != nil {
					return classifyDDL(ctx, fmt.Errorf("set REPLICA IDENTITY FULL on %s: %w", t.Name, err))
				}
				a.logger(ctx).Info("replica identity set to FULL", zap.Stringer("table", t.Name), zap.Bool("row_filter", filtered))
			}
		}
	}
	if err := source.EnsurePublication(ctx, conn, s.SlotName(), source.Owner(s.Name), tables); err != nil {
		return classifyDDL(ctx, err)
	}
	// Schema changes are captured from before the slot exists: the schema read in its snapshot
	// and the events after it meet exactly.
	if s.CapturesSchemaChanges() && ddlcapture.Supported(conn) {
		if err := ddlcapture.Install(ctx, conn, s.SlotName(), ddlcapture.SelectionOf(s)); err != nil {
			return classifyDDL(ctx, err)
		}
	}
	return nil
}

// SnapshotInput is api.SnapshotInput.
type SnapshotInput = api.SnapshotInput

// OpenSnapshot creates the replication slot with an exported snapshot (or, without incremental
// sync, exports a plain snapshot) and keeps the connection on this worker for HoldSnapshot. Run it
// in the same session as HoldSnapshot.
func (a *Activities) OpenSnapshot(ctx context.Context, in SnapshotInput) (source.SlotSnapshot, error) {
	s := in.Spec
	log := a.logger(ctx)
	if old, ok := a.snapshots.LoadAndDelete(s.Name); ok {
		old.(*heldSnapshot).close(ctx)
	}
	if !in.WithSlot {
		conn, err := a.Open.Connect(ctx, s.Source)
		if err != nil {
			return source.SlotSnapshot{}, classify(ctx, err)
		}
		var name string
		_, err = conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
		if err == nil {
			err = conn.QueryRow(ctx, "SELECT pg_catalog.pg_export_snapshot()").Scan(&name)
		}
		if err != nil {
			closeAll(ctx, conn)
			return source.SlotSnapshot{}, classify(ctx, fmt.Errorf("export snapshot: %w", err))
		}
		a.snapshots.Store(s.Name, newHeldSnapshot(nil, conn))
		return source.SlotSnapshot{SnapshotName: name}, nil
	}

	// A slot left by an earlier attempt of this step has no live snapshot and nothing was loaded
	// from it yet (this step runs before the load): recreate it.
	conn, err := a.Open.Connect(ctx, s.Source)
	if err != nil {
		return source.SlotSnapshot{}, classify(ctx, err)
	}
	// Never drop another task's slot (one whose name differs from this one's only in '-' and '_').
	err = source.CheckOwner(ctx, conn, s.SlotName(), source.Owner(s.Name))
	var st source.SlotState
	if err == nil {
		st, err = source.Slot(ctx, conn, s.SlotName())
	}
	if err == nil && st.Exists {
		log.Warn("replication slot exists from an earlier attempt: recreating it", zap.String("slot", s.SlotName()))
		err = source.DropSlot(ctx, conn, s.SlotName())
	}
	closeAll(ctx, conn)
	if err != nil {
		return source.SlotSnapshot{}, classify(ctx, err)
	}
	repl, err := a.Open.ConnectReplication(ctx, s.Source)
	if err != nil {
		return source.SlotSnapshot{}, classify(ctx, err)
	}
	create := source.CreateSlot
	if in.Temporary {
		create = source.CreateTemporarySlot
	}
	snap, err := create(ctx, repl, s.SlotName())
	if err != nil {
		_ = repl.Close(ctx)
		return source.SlotSnapshot{}, classify(ctx, err)
	}
	a.snapshots.Store(s.Name, newHeldSnapshot(repl, nil))
	log.Info("replication slot created", zap.String("slot", s.SlotName()), zap.String("snapshot", snap.SnapshotName),
		zap.String("consistent_point", snap.ConsistentPoint))
	return snap, nil
}

// HoldSnapshot keeps the snapshot's connection open, heartbeating, until EndSnapshot or a
// cancellation ends it (the full load is over). Run it in the session of OpenSnapshot.
func (a *Activities) HoldSnapshot(ctx context.Context, task string) error {
	v, ok := a.snapshots.Load(task)
	if !ok {
		return classify(ctx, errclass.Permanent(fmt.Errorf("snapshot of task %s is not held on this worker: it was lost (worker restarted)", task)))
	}
	held := v.(*heldSnapshot)
	defer func() {
		a.snapshots.Delete(task)
		held.close(context.WithoutCancel(ctx))
	}()
	// Every second: a cancellation reaches the activity with its next heartbeat (EndSnapshot,
	// in the same session, is quicker).
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		activity.RecordHeartbeat(ctx, "holding")
		select {
		case <-ctx.Done():
			return nil
		case <-held.end:
			return nil
		case <-t.C:
		}
	}
}

// EndSnapshot ends the task's HoldSnapshot at once (run it in the holder's session: the snapshot
// is held in this worker's memory). A snapshot no longer held is no error.
func (a *Activities) EndSnapshot(ctx context.Context, task string) error {
	if v, ok := a.snapshots.Load(task); ok {
		held := v.(*heldSnapshot)
		held.endOnce.Do(func() { close(held.end) })
	}
	return nil
}

// ResetLoadInput is api.ResetLoadInput.
type ResetLoadInput = api.ResetLoadInput

// ResetLoad empties the destination tables and forgets their committed chunks, so they load
// again from the start (in a new snapshot, after the first one was lost).
func (a *Activities) ResetLoad(ctx context.Context, in ResetLoadInput) error {
	conn, err := a.Open.ConnectDestination(ctx, in.Spec.Destination)
	if err != nil {
		return classify(ctx, err)
	}
	defer closeAll(ctx, conn)
	return classify(ctx, fullload.Reset(ctx, conn, in.Spec.Name, in.Tables, in.Generations))
}

// EnsureBookkeeping creates Skein's bookkeeping tables on the destination.
func (a *Activities) EnsureBookkeeping(ctx context.Context, s spec.Spec) error {
	conn, err := a.Open.ConnectDestination(ctx, s.Destination)
	if err != nil {
		return classify(ctx, err)
	}
	defer closeAll(ctx, conn)
	return classify(ctx, bookkeeping.Ensure(ctx, conn))
}

// Release stops nothing by itself (the workflow has stopped apply) and removes what Skein created:
// the slot and publication on the source, the task's bookkeeping on the destination.
func (a *Activities) Release(ctx context.Context, s spec.Spec) error {
	src, dst, err := a.connectBoth(ctx, s.Source, s.Destination)
	if err != nil {
		return classify(ctx, err)
	}
	defer closeAll(ctx, src, dst)
	// The helper of a modify-objects in progress goes too.
	for _, sp := range []spec.Spec{s.Helper(), s} {
		err := source.CheckOwner(ctx, src, sp.SlotName(), source.Owner(sp.Name))
		if errclass.Of(err) == errclass.Fatal {
			// Another task's (its name differs only in '-' and '_'): not ours to drop.
			a.logger(ctx).Warn("slot and publication left in place", zap.String("slot", sp.SlotName()), zap.Error(err))
			err = nil
		} else if err == nil {
			err = source.DropSlot(ctx, src, sp.SlotName())
			if err == nil {
				err = source.DropPublication(ctx, src, sp.SlotName())
			}
			if err == nil {
				var restored []string
				if restored, err = source.RestoreIdentities(ctx, src, sp.SlotName()); len(restored) > 0 {
					a.logger(ctx).Info("replica identities restored", zap.Strings("tables", restored))
				}
			}
			if err == nil {
				err = ddlcapture.Remove(ctx, src, sp.SlotName())
			}
		}
		if err != nil {
			return classify(ctx, err)
		}
		if err := bookkeeping.Drop(ctx, dst, sp.Name); err != nil {
			return classify(ctx, err)
		}
		a.logger(ctx).Info("released: slot, publication and bookkeeping removed", zap.String("slot", sp.SlotName()))
	}
	return nil
}

// SourcePosition returns the source's current WAL position.
func (a *Activities) SourcePosition(ctx context.Context, s spec.Spec) (string, error) {
	conn, err := a.Open.Connect(ctx, s.Source)
	if err != nil {
		return "", classify(ctx, err)
	}
	defer closeAll(ctx, conn)
	lsn, err := source.CurrentWAL(ctx, conn)
	if err != nil {
		return "", classify(ctx, err)
	}
	return lsn.String(), nil
}

// SlotState reads the task's replication slot: whether it exists and how far its consumer got.
func (a *Activities) SlotState(ctx context.Context, s spec.Spec) (source.SlotState, error) {
	conn, err := a.Open.Connect(ctx, s.Source)
	if err != nil {
		return source.SlotState{}, classify(ctx, err)
	}
	defer closeAll(ctx, conn)
	st, err := source.Slot(ctx, conn, s.SlotName())
	if err == nil {
		st.Capture, err = ddlcapture.IsInstalled(ctx, conn, s.SlotName())
	}
	return st, classify(ctx, err)
}
