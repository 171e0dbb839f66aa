package activities

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/fullload"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
)

// TablePlan is the load plan of one table.
type TablePlan struct {
	Table        spec.TableMap    `json:"table"`
	RowsEstimate int64            `json:"rows_estimate"`
	Chunks       []fullload.Chunk `json:"chunks"`
}

// PlanLoad cuts every selected table into chunks, largest tables first.
func (a *Activities) PlanLoad(ctx context.Context, in SchemaInput) ([]TablePlan, error) {
	conn, err := a.Open.Connect(ctx, in.Spec.Source)
	if err != nil {
		return nil, classify(err)
	}
	defer closeAll(ctx, conn)
	var version int
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return nil, classify(err)
	}
	tx, err := catalog.BeginRead(ctx, conn, in.Snapshot)
	if err != nil {
		return nil, classify(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	defs, err := catalog.LoadTables(ctx, tx, in.Tables)
	if err != nil {
		return nil, classify(err)
	}
	plans := make([]TablePlan, len(defs))
	for i, t := range defs {
		plans[i] = TablePlan{
			Table:        in.Tables[i],
			RowsEstimate: t.RowsEstimate,
			Chunks:       fullload.Plan(t, in.Tables[i], in.Spec.FullLoad.ChunkMB, version),
		}
	}
	return plans, nil
}

// ErrSnapshotLost is the ApplicationError type of a chunk that could not import the task's
// snapshot because its holder ended: the workflow reloads the unfinished tables in a new one.
const ErrSnapshotLost = "snapshot_lost"

func classifyChunk(err error) error {
	if errors.Is(err, catalog.ErrSnapshotGone) {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrSnapshotLost, nil)
	}
	return classify(err)
}

// CopyChunkInput asks for one chunk.
type CopyChunkInput struct {
	Spec     spec.Spec      `json:"spec"`
	Chunk    fullload.Chunk `json:"chunk"`
	Snapshot string         `json:"snapshot"`
}

// CopyChunk copies one chunk inside the task's snapshot; a chunk committed before is a no-op.
func (a *Activities) CopyChunk(ctx context.Context, in CopyChunkInput) (fullload.Result, error) {
	src, dst, err := a.connectBoth(ctx, in.Spec)
	if err != nil {
		return fullload.Result{}, classify(err)
	}
	defer closeAll(ctx, src, dst)
	tx, err := catalog.BeginRead(ctx, src, in.Snapshot)
	if err != nil {
		return fullload.Result{}, classifyChunk(err)
	}
	defs, err := catalog.LoadTables(ctx, tx, []spec.TableMap{in.Chunk.Table})
	_ = tx.Rollback(ctx)
	if err != nil {
		return fullload.Result{}, classifyChunk(err)
	}
	var streamed atomic.Int64
	stop := heartbeatEvery(ctx, 10*time.Second, func() any { return streamed.Load() })
	defer stop()
	c := &fullload.Copier{
		Task: in.Spec.Name, Source: src, Dest: dst, Snapshot: in.Snapshot,
		KeepExisting: in.Spec.ConflictMode == spec.ConflictIgnore,
		// Each of the parallel chunks gets its share, so the task stays under the limit wherever
		// its chunks run.
		Throttle: throttle.New(float64(in.Spec.Throttle.Full.RowsPerSecond)/float64(in.Spec.FullLoad.Parallelism),
			float64(in.Spec.Throttle.Full.MBPerSecond)/float64(in.Spec.FullLoad.Parallelism)),
		Progress: func(n int64) { streamed.Store(n); activity.RecordHeartbeat(ctx, n) },
	}
	res, err := c.CopyChunk(ctx, defs[0], in.Chunk)
	if err != nil {
		return res, classifyChunk(err)
	}
	a.logger(ctx).Info("chunk copied", zap.String("chunk", in.Chunk.ID), zap.Int64("rows", res.Rows),
		zap.Int64("bytes", res.Bytes), zap.Bool("skipped", res.Skipped))
	return res, nil
}
