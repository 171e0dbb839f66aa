package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/ddl"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
	"github.com/skein-dts/skein/pkg/verify"
)

// RepairInput is api.RepairInput.
type RepairInput = api.RepairInput

// repairRefusal says why a table's differences are not repaired, or "" when they are: a
// destination that differs from the source on purpose (conflict_mode: ignore keeps the rows it
// had; a table that leaves out operations keeps what they would change) is not overwritten.
// A row filter does not stop a repair: it is an immutable expression over the row's own columns
// (the precheck holds it to what a publication row filter may be), so the rows it selects at the
// repair's position are the rows the stream keeps on the destination.
func repairRefusal(s spec.Spec, tm spec.TableMap) string {
	if s.ConflictMode == spec.ConflictIgnore {
		return "conflict_mode ignore keeps destination rows that differ from the source"
	}
	var left []string
	for _, op := range []string{spec.OpInsert, spec.OpUpdate, spec.OpDelete, spec.OpTruncate} {
		if !tm.Allows(op) {
			left = append(left, op)
		}
	}
	if len(left) > 0 {
		return "the table's operations leave out " + strings.Join(left, ", ") + ": its destination differs from the source on purpose"
	}
	return ""
}

// recordRepair keeps the differences of a verification on the destination, for the repair
// that follows (its id), and marks each table's result: pending, or refused and why.
func recordRepair(ctx context.Context, dst *pgx.Conn, s spec.Spec, id string, tables []spec.TableMap, res []verify.TableResult, targets map[int]verify.Targets) error {
	var rows []bookkeeping.RepairTargets
	for i := range res {
		tg, ok := targets[i]
		if !ok {
			continue
		}
		tr := &api.TableRepair{Table: tables[i].Source.String()}
		res[i].Repair = tr
		if tr.Refused = repairRefusal(s, tables[i]); tr.Refused != "" {
			continue
		}
		b, err := json.Marshal(tg)
		if err != nil {
			return err
		}
		tr.Pending = true
		rows = append(rows, bookkeeping.RepairTargets{Table: tr.Table, Targets: b})
	}
	if len(rows) == 0 {
		return nil
	}
	if err := bookkeeping.Ensure(ctx, dst); err != nil {
		return err
	}
	return bookkeeping.SaveRepair(ctx, dst, s.Name, id, rows)
}

// Repair repairs what a verification of a task that does not stream recorded: the source is
// read as it is now, in one transaction, and the destination written in one.
func (a *Activities) Repair(ctx context.Context, in RepairInput) (api.RepairOutcome, error) {
	src, dst, err := a.connectBoth(ctx, in.Spec.Source, in.Spec.Destination)
	if err != nil {
		return api.RepairOutcome{}, classify(ctx, err)
	}
	defer closeAll(ctx, src, dst)
	tx, err := catalog.BeginRead(ctx, src, "")
	if err != nil {
		return api.RepairOutcome{}, classify(ctx, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	out, err := a.repairIn(ctx, tx, dst, in.Spec, in.Tables, in.RepairID)
	return out, classify(ctx, err)
}

// repairSlot is the temporary slot whose snapshot a repair reads the source in.
func repairSlot(s spec.Spec) string {
	name := s.SlotName()
	return name[:min(len(name), 56)] + "_repair"
}

// repairBarrier is the position a repair writes at: a temporary slot's exported snapshot. The
// apply run stops before the first source transaction committed at or after its position
// (cdc.StreamOptions.StopBefore), so the destination is then where the snapshot sees the source.
type repairBarrier struct {
	repl *pgconn.PgConn
	snap source.SlotSnapshot
	at   pglogrepl.LSN
}

// openRepairBarrier creates the barrier of a repair run.
func (a *Activities) openRepairBarrier(ctx context.Context, s spec.Spec) (*repairBarrier, error) {
	repl, err := a.Open.ConnectReplication(ctx, s.Source)
	if err != nil {
		return nil, err
	}
	snap, err := source.CreateTemporarySlot(ctx, repl, repairSlot(s))
	if err != nil {
		repl.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("repair: create the temporary slot %s: %w", repairSlot(s), err)
	}
	at, err := pglogrepl.ParseLSN(snap.ConsistentPoint)
	if err != nil {
		repl.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("repair: the slot's position %q: %w", snap.ConsistentPoint, err)
	}
	return &repairBarrier{repl: repl, snap: snap, at: at}, nil
}

// close drops the temporary slot (it ends with its connection).
func (b *repairBarrier) close(ctx context.Context) {
	if b != nil {
		_ = b.repl.Close(context.WithoutCancel(ctx))
	}
}

// repairAt repairs in the barrier's snapshot, on the apply's destination session (the stream
// stopped at the barrier).
func (a *Activities) repairAt(ctx context.Context, b *repairBarrier, dst *pgx.Conn, in ApplyInput) (*api.RepairOutcome, error) {
	src, err := a.Open.Connect(ctx, in.Spec.Source)
	if err != nil {
		return nil, err
	}
	defer closeAll(ctx, src)
	tx, err := catalog.BeginRead(ctx, src, b.snap.SnapshotName)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	out, err := a.repairIn(ctx, tx, dst, in.Spec, in.Tables, in.Repair)
	if err != nil {
		return nil, err
	}
	out.Position = b.at.String()
	return &out, nil
}

// repairIn repairs the recorded targets of repair id from src (a source transaction: the
// position the rows are read at) in one destination transaction on dst, which also records what
// was done: a repair run again (its worker lost) finds it done.
func (a *Activities) repairIn(ctx context.Context, src pgx.Tx, dst *pgx.Conn, s spec.Spec, tables []spec.TableMap, id string) (api.RepairOutcome, error) {
	out := api.RepairOutcome{ID: id}
	if err := bookkeeping.Ensure(ctx, dst); err != nil {
		return out, err
	}
	recorded, err := bookkeeping.Repair(ctx, dst, s.Name, id)
	if err != nil {
		return out, err
	}
	var done atomic.Int64
	stop := heartbeatEvery(ctx, 2*time.Second, func() any { return api.VerifyProgress{Done: int(done.Load()), Total: len(recorded)} })
	defer stop()
	tx, err := dst.Begin(ctx)
	if err != nil {
		return out, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	// As the change apply writes: no user triggers, no foreign key checks of replicated rows.
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return out, fmt.Errorf("repair: %w", err)
	}
	opts := verify.Options{
		Mapper:   ddl.SpecMapper{Objects: s.Objects, Tables: tables},
		Throttle: throttle.New(float64(s.Throttle.Full.RowsPerSecond), float64(s.Throttle.Full.MBPerSecond)),
	}
	for _, r := range recorded {
		tr := api.TableRepair{Table: r.Table}
		switch i := slices.IndexFunc(tables, func(tm spec.TableMap) bool { return tm.Source.String() == r.Table }); {
		case r.Result != nil:
			if err := json.Unmarshal(r.Result, &tr); err != nil {
				return out, fmt.Errorf("repair %s: read its result: %w", r.Table, err)
			}
		case i < 0:
			tr.Refused = "the table is no longer synchronized"
		default:
			var tg verify.Targets
			if err := json.Unmarshal(r.Targets, &tg); err != nil {
				return out, fmt.Errorf("repair %s: read its targets: %w", r.Table, err)
			}
			def, err := catalog.LoadTable(ctx, src, tables[i].Source)
			if err != nil {
				return out, fmt.Errorf("repair %s: %w", r.Table, err)
			}
			n, err := verify.Repair(ctx, src, tx, verify.Table{Def: def, Map: tables[i]}, tg, opts)
			if err != nil {
				return out, err
			}
			tr.Deleted, tr.Inserted = n.Deleted, n.Inserted
			b, _ := json.Marshal(tr)
			if err := bookkeeping.MarkRepaired(ctx, tx, s.Name, id, r.Table, b); err != nil {
				return out, err
			}
		}
		out.Tables = append(out.Tables, tr)
		done.Add(1)
	}
	if err := tx.Commit(ctx); err != nil {
		return out, fmt.Errorf("repair: commit: %w", err)
	}
	for _, tr := range out.Tables {
		a.logger(ctx).Info("repaired", zap.String("table", tr.Table), zap.Int64("deleted", tr.Deleted),
			zap.Int64("inserted", tr.Inserted), zap.String("refused", tr.Refused))
	}
	return out, nil
}
