package activities

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/ddl"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/temporalx"
	"github.com/skein-dts/skein/pkg/throttle"
	"github.com/skein-dts/skein/pkg/verify"
)

// VerifyProgress is the heartbeat of a verification (api.VerifyProgress).
type VerifyProgress = api.VerifyProgress

// TaskInfo is api.TaskInfo.
type TaskInfo = api.TaskInfo

// DescribeTask reads a task's spec from its history and, while it runs, its phase.
func (a *Activities) DescribeTask(ctx context.Context, id string) (TaskInfo, error) {
	var info TaskInfo
	s, err := temporalx.TaskSpec(ctx, a.Client, id)
	if errors.Is(err, temporalx.ErrNoTask) {
		return info, errclass.Permanent(err)
	}
	if err != nil {
		return info, err
	}
	info.Spec = s
	desc, err := a.Client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return info, fmt.Errorf("describe task %s: %w", id, err)
	}
	if desc.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return info, nil
	}
	info.Running = true
	v, err := a.Client.QueryWorkflow(ctx, id, "", api.QueryStatus)
	if err != nil {
		return info, fmt.Errorf("query the status of task %s: %w", id, err)
	}
	var st api.Status
	if err := v.Get(&st); err != nil {
		return info, fmt.Errorf("decode the status of task %s: %w", id, err)
	}
	info.Phase = st.Phase
	if len(st.Objects) > 0 {
		info.Spec.Objects = st.Objects // modified since the run started
	}
	// Tasks started before the query existed do not answer it: their spec resolves the tables.
	if v, err := a.Client.QueryWorkflow(ctx, id, "", QueryTables); err == nil {
		if err := v.Get(&info.Tables); err != nil {
			return info, fmt.Errorf("decode the tables of task %s: %w", id, err)
		}
	}
	return info, nil
}

// TaskRunning says whether task id runs (any run of its chain): a verification waiting for the
// task to carry out a repair stops waiting when it does not.
func (a *Activities) TaskRunning(ctx context.Context, id string) (bool, error) {
	desc, err := a.Client.DescribeWorkflowExecution(ctx, id, "")
	if nf := (*serviceerror.NotFound)(nil); errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("describe task %s: %w", id, err)
	}
	return desc.GetWorkflowExecutionInfo().GetStatus() == enums.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// Verify compares every selected table on both sides (verify.mode) after the full load, the source
// read inside the task's snapshot, so the comparison is exact while the source keeps changing.
func (a *Activities) Verify(ctx context.Context, in SchemaInput) ([]verify.TableResult, error) {
	return a.verify(ctx, in.Spec, in.Tables, in.Snapshot, VerifyTaskInput{})
}

// VerifyTaskInput is api.VerifyTaskInput.
type VerifyTaskInput = api.VerifyTaskInput

// VerifyTask compares a task's tables now (skein verify), and with a repair id records what
// differs on the destination for the repair.
func (a *Activities) VerifyTask(ctx context.Context, in VerifyTaskInput) ([]verify.TableResult, error) {
	return a.verify(ctx, in.Spec, in.Tables, "", in)
}

// verify compares tables, in the snapshot if one is given; how (streaming, repair, rotation) as
// the task's verification asks.
func (a *Activities) verify(ctx context.Context, s spec.Spec, tables []spec.TableMap, snapshot string, how VerifyTaskInput) ([]verify.TableResult, error) {
	streaming := how.Streaming
	sd, err := a.openSides(ctx, s, tables, snapshot)
	if err != nil {
		return nil, classifySnapshotRead(ctx, err)
	}
	defer sd.close(ctx)
	// One pair per parallel chunk; the first reuses sd. The source side of each pair reads inside
	// the snapshot when there is one.
	pairs := []verify.Pair{{Src: sd.tx, Dst: sd.dst}}
	if snapshot == "" {
		// No snapshot: every comparison reads the source as it is now.
		_ = sd.tx.Rollback(ctx)
		pairs[0].Src = sd.src
	}
	var extra []*pgx.Conn
	defer func() { closeAll(ctx, extra...) }()
	// Extra pairs only while the worker's connection budget has room: a comparison on fewer
	// pairs is slower, one waiting for connections its own pairs hold never ends.
	for len(pairs) < s.FullLoad.Parallelism && a.Open.Budget.Spare() >= 2 {
		src, dst, err := a.connectBoth(ctx, s.Source, s.Destination)
		if err != nil {
			return nil, classify(ctx, err)
		}
		extra = append(extra, src, dst)
		p := verify.Pair{Src: src, Dst: dst}
		if snapshot != "" {
			tx, err := catalog.BeginRead(ctx, src, snapshot)
			if err != nil {
				return nil, classifySnapshotRead(ctx, err)
			}
			p.Src = tx
		}
		pairs = append(pairs, p)
	}
	for _, p := range pairs {
		for _, q := range []verify.Querier{p.Src, p.Dst} {
			if err := verify.Session(ctx, q); err != nil {
				return nil, classify(ctx, err)
			}
		}
	}
	var progress atomic.Value
	progress.Store(VerifyProgress{})
	stop := heartbeatEvery(ctx, 2*time.Second, func() any { return progress.Load() })
	defer stop()
	opts := verify.Options{
		Mode:          s.Verify.Mode,
		SamplePercent: s.Verify.SamplePercent,
		Throttle:      throttle.New(float64(s.Throttle.Full.RowsPerSecond), 0),
		Queries:       throttle.New(float64(s.Throttle.Full.SourceQPS), 0),
		Mapper:        ddl.SpecMapper{Objects: s.Objects, Tables: tables},
		Progress:      func(done, total int) { progress.Store(VerifyProgress{Done: done, Total: total}) },
		Rotate:        how.Rotate,
		Round:         how.Round,
	}
	targets := map[int]verify.Targets{}
	if how.RepairID != "" {
		opts.OnTargets = func(i int, t verify.Targets) { targets[i] = t }
	}
	if snapshot != "" {
		// A new transaction in the same snapshot every 100 tables or chunks: it releases the
		// previous one's table locks. Committed, so the session's settings stay.
		opts.RenewSource = func(ctx context.Context, src verify.Querier) (verify.Querier, error) {
			tx := src.(pgx.Tx)
			if err := tx.Commit(ctx); err != nil {
				return nil, err
			}
			return catalog.BeginRead(ctx, tx.Conn(), snapshot)
		}
	}
	if streaming {
		opts.Settle = func(ctx context.Context) error { return a.settle(ctx, sd.src, spec.SlotNameFor(s.Name)) }
	}
	vt := make([]verify.Table, len(tables))
	for i := range tables {
		vt[i] = verify.Table{Def: sd.defs[i], Map: tables[i], ChunkRows: verify.ChunkRowsFor(sd.defs[i], s.FullLoad.ChunkMB)}
	}
	out, err := verify.Run(ctx, pairs, vt, opts)
	if err != nil {
		return nil, classify(ctx, err)
	}
	if how.RepairID != "" {
		if err := recordRepair(ctx, sd.dst, s, how.RepairID, tables, out, targets); err != nil {
			return nil, classify(ctx, err)
		}
	}
	for _, r := range out {
		if !r.Equal {
			a.logger(ctx).Warn("verification found differences", zap.String("table", r.Source),
				zap.Int64("missing", r.Missing), zap.Int64("extra", r.Extra),
				zap.Int64("different", r.Different), zap.Int64("changing", r.Changing))
		}
	}
	return out, nil
}

// settleTimeout is how long a verification waits for the apply to pass the source's position.
const settleTimeout = 2 * time.Minute

// settle waits until the task's slot has confirmed (the apply committed on the destination)
// everything the source wrote before the call. conn is a source connection outside any snapshot.
func (a *Activities) settle(ctx context.Context, conn *pgx.Conn, slot string) error {
	target, err := source.CurrentWAL(ctx, conn)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(settleTimeout)
	for {
		st, err := source.Slot(ctx, conn, slot)
		if err != nil {
			return err
		}
		if !st.Exists {
			return errclass.Permanent(fmt.Errorf("replication slot %s does not exist: the task no longer streams changes", slot))
		}
		if pglogrepl.LSN(st.ConfirmedFlush) >= target {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the apply did not reach source position %s within %s (it is at %s): is the task paused or retrying?", target, settleTimeout, st.ConfirmedFlush)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
