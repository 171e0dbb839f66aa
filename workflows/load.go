package workflows

import (
	"fmt"
	"sort"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/fullload"
	"github.com/skein-dts/skein/pkg/spec"
)

// fullLoad copies every chunk with bounded parallelism, largest tables first. With hold (the
// task's snapshot holder), losing the holder does not fail the load: the tables with chunks not
// yet committed load again from the start in a new snapshot (see reload).
func (w *task) fullLoad(ctx workflow.Context, in activities.SchemaInput, opts workflow.ActivityOptions, hold *snapshotHold) error {
	var plans []activities.TablePlan
	if err := w.callBeforeLoad(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Minute}, acts.PlanLoad, &plans, &in, hold); err != nil {
		return err
	}
	order := make([]int, len(plans))
	statusOf := make([]int, len(plans)) // plan -> its entry in status.Tables
	at := w.statusIndexes()
	for i := range plans {
		order[i] = i
		statusOf[i] = statusIndex(at, plans[i].Table.Source)
		w.status.Tables[statusOf[i]].RowsEstimate = plans[i].RowsEstimate
		w.status.Tables[statusOf[i]].Chunks = len(plans[i].Chunks)
		if plans[i].Unlogged && w.spec.IncrementalSync() {
			w.status.Tables[statusOf[i]].Note = NoteUnlogged
		}
	}
	// Largest first (stable, deterministic).
	sort.SliceStable(order, func(a, b int) bool { return plans[order[a]].RowsEstimate > plans[order[b]].RowsEstimate })
	load := make([]bool, len(plans)) // the tables to load (all, then those to reload)
	for i := range load {
		load[i] = true
	}
	// Histories from before small tables were batched replay without batches.
	batching := workflow.GetVersion(ctx, "batch-small-tables", workflow.DefaultVersion, 1) == 1
	for {
		jobs := w.loadJobs(plans, order, load, statusOf, batching)
		unfinished, err := w.copyChunks(ctx, in, opts, jobs, statusOf)
		if err != nil || len(unfinished) == 0 {
			return err
		}
		if hold == nil {
			return fmt.Errorf("the snapshot of the load was lost (its holder ended) with %d chunks left", len(unfinished))
		}
		clear(load)
		for _, j := range unfinished {
			for _, i := range j.tables {
				load[i] = true
			}
		}
		var tables []spec.TableMap
		for _, i := range order {
			if load[i] {
				tables = append(tables, plans[i].Table)
			}
		}
		if in.Snapshot, err = w.reload(ctx, in.Spec, tables, hold); err != nil {
			return err
		}
	}
}

// loadJob is one activity of the load: one chunk, or a batch of small tables' single chunks.
// tables[i] is the plan (an index into the plans) chunks[i] belongs to.
type loadJob struct {
	tables []int
	chunks []fullload.Chunk
}

// Small tables (one chunk of at most a quarter of full_load.chunk_mb) are copied in batches of up
// to chunk_mb and batchTables tables: a schema of thousands of tiny tables costs a few activities.
const batchTables = 100

// loadJobs lists the chunks of the tables to load, in order (largest tables first), small tables
// batched when batching is on. Each chunk carries its table's load generation (its reloads).
func (w *task) loadJobs(plans []activities.TablePlan, order []int, load []bool, statusOf []int, batching bool) []loadJob {
	limit := int64(w.spec.FullLoad.ChunkMB) << 20
	var jobs []loadJob
	var batch loadJob
	var batchBytes int64
	closeBatch := func() {
		if len(batch.chunks) > 0 {
			jobs = append(jobs, batch)
		}
		batch, batchBytes = loadJob{}, 0
	}
	for _, i := range order {
		if !load[i] {
			continue
		}
		p := plans[i]
		gen := w.status.Tables[statusOf[i]].Reloads
		if batching && len(p.Chunks) == 1 && p.Bytes <= limit/4 {
			batch.tables = append(batch.tables, i)
			c := p.Chunks[0]
			c.Generation = gen
			batch.chunks = append(batch.chunks, c)
			if batchBytes += p.Bytes; batchBytes >= limit || len(batch.chunks) >= batchTables {
				closeBatch()
			}
			continue
		}
		for _, c := range p.Chunks {
			c.Generation = gen
			jobs = append(jobs, loadJob{tables: []int{i}, chunks: []fullload.Chunk{c}})
		}
	}
	closeBatch()
	return jobs
}

// copyChunks copies the jobs with bounded parallelism and returns the jobs left undone because
// the snapshot was lost (its holder ended): those that could not import it and those not started.
func (w *task) copyChunks(ctx workflow.Context, in activities.SchemaInput, opts workflow.ActivityOptions, jobs []loadJob, statusOf []int) ([]loadJob, error) {
	next := 0
	var firstErr error
	var lost []loadJob
	// throttle.full.source_qps: chunk queries start at most that many per second, task-wide.
	var nextStart time.Time
	pace := func(ctx workflow.Context) error {
		qps := w.spec.Throttle.Full.SourceQPS
		if qps <= 0 {
			return nil
		}
		now := workflow.Now(ctx)
		if nextStart.Before(now) {
			nextStart = now
		}
		wait := nextStart.Sub(now)
		nextStart = nextStart.Add(time.Second / time.Duration(qps))
		if wait > 0 {
			return workflow.Sleep(ctx, wait)
		}
		return nil
	}
	// At most share chunks run at once: each gets that share of the throttle limits.
	share := min(w.spec.FullLoad.Parallelism, len(jobs))
	wg := workflow.NewWaitGroup(ctx)
	for n := 0; n < share; n++ {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			for firstErr == nil && lost == nil && next < len(jobs) {
				j := jobs[next]
				next++
				if err := pace(ctx); err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				for _, i := range j.tables {
					w.status.Tables[statusOf[i]].State = TableLoading
				}
				var results []fullload.Result
				var err error
				w.copying++
				if len(j.chunks) == 1 {
					var res fullload.Result
					err = w.call(ctx, opts, acts.CopyChunk, &res,
						activities.CopyChunkInput{Spec: in.Spec, Chunk: j.chunks[0], Snapshot: in.Snapshot, Share: share})
					results = []fullload.Result{res}
				} else {
					err = w.call(ctx, opts, acts.CopyChunks, &results,
						activities.CopyChunksInput{Spec: in.Spec, Chunks: j.chunks, Snapshot: in.Snapshot, Share: share})
				}
				w.copying--
				if snapshotLost(err) {
					lost = append(lost, j)
					return
				}
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				for k, res := range results {
					ts := &w.status.Tables[statusOf[j.tables[k]]]
					ts.RowsCopied += res.Rows
					ts.BytesCopied += res.Bytes
					ts.ChunksDone++
					w.metrics.table(*ts)
					if ts.ChunksDone == ts.Chunks {
						ts.State = TableDone
						if ts.RowsEstimate < ts.RowsCopied {
							ts.RowsEstimate = ts.RowsCopied
						}
					}
				}
			}
		})
	}
	wg.Wait(ctx)
	if firstErr != nil || lost == nil {
		return nil, firstErr
	}
	return append(lost, jobs[next:]...), nil
}

// reload starts the load of tables over after the snapshot holder ended: their destination rows
// and committed chunks are removed, a new holder exports a new snapshot (of a temporary slot, for
// its exact consistent point) and, for incremental tasks, the task's stream skips those tables'
// changes committed before that point, which the new snapshot holds. The tables loaded completely
// keep the first snapshot. It returns the new snapshot's name.
func (w *task) reload(ctx workflow.Context, s spec.Spec, tables []spec.TableMap, hold *snapshotHold) (string, error) {
	names := make([]string, len(tables))
	gens := make([]int, len(tables))
	at := w.statusIndexes()
	for i, t := range tables {
		names[i] = t.Source.String()
		ts := &w.status.Tables[statusIndex(at, t.Source)]
		ts.State, ts.RowsCopied, ts.BytesCopied, ts.ChunksDone = TablePending, 0, 0, 0
		ts.Reloads++
		gens[i] = ts.Reloads
	}
	workflow.GetLogger(ctx).Warn("the snapshot holder ended during the full load: tables load again in a new snapshot", "tables", names)
	hold.close(ctx)
	short := workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Minute, HeartbeatTimeout: time.Minute}
	if err := w.call(ctx, short, acts.ResetLoad, nil, activities.ResetLoadInput{Spec: s, Tables: tables, Generations: gens}); err != nil {
		return "", err
	}
	next, err := w.openSnapshot(ctx, activities.SnapshotInput{Spec: s.Helper(), WithSlot: s.IncrementalSync(), Temporary: true})
	if err != nil {
		return "", err
	}
	*hold = *next
	if s.IncrementalSync() {
		for _, t := range tables {
			w.skipBefore = append(w.skipBefore, activities.SkipBefore{Table: t.Source, LSN: next.snap.ConsistentPoint})
		}
	}
	return next.name(), nil
}

// reloaded reports whether a table's load started over in a new snapshot.
func (w *task) reloaded() bool {
	for _, t := range w.status.Tables {
		if t.Reloads > 0 {
			return true
		}
	}
	return false
}
