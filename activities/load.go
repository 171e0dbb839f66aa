package activities

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/fullload"
	"github.com/skein-dts/skein/pkg/redact"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
)

// TablePlan is api.TablePlan.
type TablePlan = api.TablePlan

// PlanLoad cuts every selected table into chunks, largest tables first.
func (a *Activities) PlanLoad(ctx context.Context, in SchemaInput) ([]TablePlan, error) {
	conn, err := a.Open.Connect(ctx, in.Spec.Source)
	if err != nil {
		return nil, classify(ctx, err)
	}
	defer closeAll(ctx, conn)
	var version int
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return nil, classify(ctx, err)
	}
	tx, err := catalog.BeginRead(ctx, conn, in.Snapshot)
	if err != nil {
		return nil, classifySnapshotRead(ctx, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	defs, err := catalog.LoadTables(ctx, tx, in.Tables)
	if err != nil {
		return nil, classify(ctx, err)
	}
	chunks := fullload.PlanAll(defs, in.Tables, in.Spec.FullLoad.ChunkMB, version)
	plans := make([]TablePlan, len(defs))
	for i, t := range defs {
		plans[i] = TablePlan{
			Table:        in.Tables[i],
			RowsEstimate: t.RowsEstimate,
			Chunks:       chunks[i],
			Bytes:        t.Blocks * t.BlockSize,
			Unlogged:     t.Unlogged,
			Partitioned:  t.PartitionOf != nil || t.PartitionKey != "",
		}
		for _, c := range t.Constraints {
			if c.Kind == "f" && !slices.Contains(plans[i].References, c.RefTable) {
				plans[i].References = append(plans[i].References, c.RefTable)
			}
		}
	}
	return plans, nil
}

// ErrSnapshotLost is api.ErrSnapshotLost.
const ErrSnapshotLost = api.ErrSnapshotLost

// ErrStaleChunk is the ApplicationError type of a chunk whose table was reset after it was
// planned: only an activity that outlived its run (the workflow no longer waits for it) sees it.
const ErrStaleChunk = "stale_chunk"

// classifySnapshotRead classifies an error of an activity that reads the task's exported
// snapshot (chunk copies, the verification after the load): a snapshot that can no longer be
// imported is ErrSnapshotLost, for the workflow to go on without it.
func classifySnapshotRead(ctx context.Context, err error) error {
	if errors.Is(err, catalog.ErrSnapshotGone) {
		return temporal.NewNonRetryableApplicationError(redact.TextFor(ctx, err), ErrSnapshotLost, nil)
	}
	if errors.Is(err, fullload.ErrStaleChunk) {
		return temporal.NewNonRetryableApplicationError(redact.TextFor(ctx, err), ErrStaleChunk, nil)
	}
	return classify(ctx, err)
}

// QueryLoadShare is the workflow query that answers how many chunk copies run now.
const QueryLoadShare = api.QueryLoadShare

// QueryTables answers a running task's current table list (its mappings), which schema changes
// on the source change while it streams.
const QueryTables = api.QueryTables

// loadShareEvery is how often a throttled chunk asks its workflow how many chunks run now.
const loadShareEvery = time.Second

// followLoadShare asks the activity's workflow every loadShareEvery how many chunks run now and
// gives limiter that share, until the returned stop is called. Without a client (or an answer)
// the limiter keeps its share.
func (a *Activities) followLoadShare(ctx context.Context, limiter *throttle.Limiter) (stop func()) {
	if a.Client == nil {
		return func() {}
	}
	info := activity.GetInfo(ctx)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(loadShareEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			qctx, qcancel := context.WithTimeout(ctx, loadShareEvery)
			v, err := a.Client.QueryWorkflow(qctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, QueryLoadShare)
			var n int
			if err == nil && v.Get(&n) == nil {
				limiter.SetShare(n)
			}
			qcancel()
		}
	}()
	return func() { cancel(); <-done }
}

// CopyChunkInput is api.CopyChunkInput.
type CopyChunkInput = api.CopyChunkInput

// CopyChunk copies one chunk inside the task's snapshot; a chunk committed before is a no-op.
func (a *Activities) CopyChunk(ctx context.Context, in CopyChunkInput) (fullload.Result, error) {
	res, err := a.CopyChunks(ctx, CopyChunksInput{Task: in.Task, Chunks: []fullload.Chunk{in.Chunk}, Snapshot: in.Snapshot, Share: in.Share})
	if err != nil {
		return fullload.Result{}, err
	}
	return res[0], nil
}

// CopyChunksInput is api.CopyChunksInput.
type CopyChunksInput = api.CopyChunksInput

// CopyAndBuildInput is api.CopyAndBuildInput.
type CopyAndBuildInput = api.CopyAndBuildInput

// CopiedAndBuilt is api.CopiedAndBuilt.
type CopiedAndBuilt = api.CopiedAndBuilt

// CopyChunksAndBuild is CopyChunks, then BuildTables for the tables in.Build names: a batch of
// small tables gets its keys in the same activity, its table list in the history once.
func (a *Activities) CopyChunksAndBuild(ctx context.Context, in CopyAndBuildInput) (CopiedAndBuilt, error) {
	res, err := a.CopyChunks(ctx, in.CopyChunksInput)
	if err != nil || len(in.Build) == 0 {
		return CopiedAndBuilt{Results: res}, err
	}
	t := in.Task
	b := BuildInput{Spec: spec.Spec{Name: t.Name, Source: t.Source, Destination: t.Destination, Objects: in.Objects,
		FullLoad: spec.FullLoad{Parallelism: t.Parallelism}}, Tables: make([]spec.TableMap, len(in.Build))}
	for k, i := range in.Build {
		b.Tables[k] = in.Chunks[i].Table
	}
	rep, err := a.BuildTables(ctx, b)
	return CopiedAndBuilt{Results: res, Schema: rep}, err
}

// CopyChunks copies the chunks in order over one pair of connections, inside the task's snapshot:
// thousands of small tables cost a few activities, not thousands. Chunks committed before are
// no-ops, so a retried batch goes on where the last attempt stopped.
func (a *Activities) CopyChunks(ctx context.Context, in CopyChunksInput) ([]fullload.Result, error) {
	release, err := a.acquire(ctx, a.slots().chunkCopies, "chunk copy")
	if err != nil {
		return nil, err
	}
	defer release()
	src, dst, err := a.connectBoth(ctx, in.Task.Source, in.Task.Destination)
	if err != nil {
		return nil, classify(ctx, err)
	}
	defer closeAll(ctx, src, dst)
	tables := make([]spec.TableMap, len(in.Chunks))
	for i, ch := range in.Chunks {
		tables[i] = ch.Table
	}
	// One source transaction in the snapshot reads the definitions and then every chunk.
	tx, err := catalog.BeginRead(ctx, src, in.Snapshot)
	if err != nil {
		return nil, classifySnapshotRead(ctx, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	defs, err := catalog.LoadTables(ctx, tx, tables)
	if err == nil {
		err = fullload.SourceSession(ctx, tx)
	}
	if err != nil {
		return nil, classifySnapshotRead(ctx, err)
	}
	var streamed atomic.Int64
	stop := heartbeatEvery(ctx, 10*time.Second, func() any { return streamed.Load() })
	defer stop()
	share := in.Share
	if share <= 0 {
		share = in.Task.Parallelism
	}
	// Each of the chunks that may run at once starts with its share, so the task stays under the
	// limit wherever its chunks run; the share follows the chunks running now (fewer at the end of
	// the load, or beside a short batch), so the task also runs close to its limit.
	limiter := throttle.Shared(float64(in.Task.Throttle.RowsPerSecond), float64(in.Task.Throttle.MBPerSecond), share)
	if limiter != nil {
		stopShare := a.followLoadShare(ctx, limiter)
		defer stopShare()
	}
	c := &fullload.Copier{
		Task: in.Task.Name, Source: src, Dest: dst, Snapshot: in.Snapshot,
		KeepExisting: in.Task.KeepExisting,
		Throttle:     limiter,
		// The transaction above.
		SourceInSnapshot: true,
	}
	results := make([]fullload.Result, len(in.Chunks))
	var before int64
	for i, ch := range in.Chunks {
		c.Progress = func(n int64) { streamed.Store(before + n); activity.RecordHeartbeat(ctx, before+n) }
		res, err := c.CopyChunk(ctx, defs[i], ch)
		if err != nil {
			return nil, classifySnapshotRead(ctx, err)
		}
		results[i] = res
		before += res.Bytes
		streamed.Store(before)
		a.logger(ctx).Info("chunk copied", zap.String("chunk", ch.ID), zap.Int64("rows", res.Rows),
			zap.Int64("bytes", res.Bytes), zap.Bool("skipped", res.Skipped))
	}
	return results, nil
}
