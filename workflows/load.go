package workflows

import (
	"fmt"
	"sort"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// fullLoad copies every chunk with bounded parallelism, largest tables first. With hold (the
// task's snapshot holder), losing the holder does not fail the load: the tables with chunks not
// yet committed load again from the start in a new snapshot (see reload). With schema sync, a
// table's keys and indexes are built as soon as its last chunk commits, while other tables load;
// and its foreign keys once the tables they reference have their keys. It returns the tables built
// so and those linked so (for the post-data step, which does the rest).
func (w *task) fullLoad(ctx workflow.Context, in api.SchemaInput, opts workflow.ActivityOptions, hold *snapshotHold) (built, linked []spec.QName, err error) {
	var plans []api.TablePlan
	if err := w.callBeforeLoad(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Minute}, api.ActivityPlanLoad, &plans, &in, hold); err != nil {
		return nil, nil, err
	}
	st := newLoadState(plans)
	order := make([]int, len(plans))
	at := w.statusIndexes()
	for i := range plans {
		order[i] = i
		st.statusOf[i] = statusIndex(at, plans[i].Table.Source)
		w.status.Tables[st.statusOf[i]].RowsEstimate = plans[i].RowsEstimate
		w.status.Tables[st.statusOf[i]].Chunks = len(plans[i].Chunks)
		if plans[i].Unlogged && w.spec.IncrementalSync() {
			w.status.Tables[st.statusOf[i]].Note = api.NoteUnlogged
		}
	}
	// Histories from before keys were built during the load build them all after it.
	if in.Spec.SchemaSync() && workflow.GetVersion(ctx, "build-during-load", workflow.DefaultVersion, 1) == 1 {
		for i := range plans {
			st.buildable[i] = !plans[i].Partitioned
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
		jobs := w.loadJobs(plans, order, load, st.statusOf, batching)
		unfinished, err := w.copyChunks(ctx, in, opts, jobs, st)
		if err != nil {
			return nil, nil, err
		}
		if len(unfinished) == 0 {
			for _, i := range order {
				if st.built[i] {
					built = append(built, plans[i].Table.Source)
				}
				if st.linked[i] {
					linked = append(linked, plans[i].Table.Source)
				}
			}
			return built, linked, nil
		}
		if hold == nil {
			return nil, nil, fmt.Errorf("the snapshot of the load was lost (its holder ended) with %d chunks left", len(unfinished))
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
			return nil, nil, err
		}
	}
}

// loadState is what the rounds of one load share: the plans, each plan's entry in status.Tables,
// which tables get their keys and indexes during the load (buildable), which have them (built),
// and which have their foreign keys (linked). refs[i] are the loaded tables plan i's foreign keys
// reference, referencedBy[i] those whose foreign keys reference plan i.
type loadState struct {
	plans                    []api.TablePlan
	statusOf                 []int
	buildable, built, linked []bool
	refs, referencedBy       [][]int
}

func newLoadState(plans []api.TablePlan) *loadState {
	n := len(plans)
	st := &loadState{plans: plans, statusOf: make([]int, n), buildable: make([]bool, n), built: make([]bool, n), linked: make([]bool, n),
		refs: make([][]int, n), referencedBy: make([][]int, n)}
	at := map[spec.QName]int{}
	for i, p := range plans {
		at[p.Table.Source] = i
	}
	for i, p := range plans {
		for _, r := range p.References {
			if j, ok := at[r]; ok { // a table not selected: the post-data step warns of its foreign key
				st.refs[i] = append(st.refs[i], j)
				st.referencedBy[j] = append(st.referencedBy[j], i)
			}
		}
	}
	return st
}

// linkable reports whether plan i's foreign keys can be added: it and every table they reference
// have their keys.
func (st *loadState) linkable(i int) bool {
	if !st.built[i] || st.linked[i] || len(st.plans[i].References) == 0 {
		return false
	}
	for _, j := range st.refs[i] {
		if !st.built[j] {
			return false
		}
	}
	return true
}

// complete reports whether every chunk of plan i is committed.
func (w *task) complete(st *loadState, i int) bool {
	ts := w.status.Tables[st.statusOf[i]]
	return ts.ChunksDone == ts.Chunks
}

// loadJob is one activity of the load: one chunk, or a batch of small tables' single chunks.
// tables[i] is the plan (an index into the plans) chunks[i] belongs to.
type loadJob struct {
	tables []int
	chunks []api.Chunk
}

// Small tables (one chunk of at most a quarter of full_load.chunk_mb) are copied in batches of up
// to chunk_mb and batchTables tables: a schema of thousands of tiny tables costs a few activities.
const batchTables = 100

// loadJobs lists the chunks of the tables to load, in order (largest tables first), small tables
// batched when batching is on. Each chunk carries its table's load generation (its reloads).
func (w *task) loadJobs(plans []api.TablePlan, order []int, load []bool, statusOf []int, batching bool) []loadJob {
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
			jobs = append(jobs, loadJob{tables: []int{i}, chunks: []api.Chunk{c}})
		}
	}
	closeBatch()
	return jobs
}

// copyChunks copies the jobs with bounded parallelism and returns the jobs left undone because
// the snapshot was lost (its holder ended): those that could not import it and those not started.
// A table whose load is complete has its keys and indexes built ahead of the next chunk, in the
// same parallelism (BuildTables, or a batch's own CopyChunksAndBuild), and its foreign keys once
// the tables they reference have theirs.
func (w *task) copyChunks(ctx workflow.Context, in api.SchemaInput, opts workflow.ActivityOptions, jobs []loadJob, st *loadState) ([]loadJob, error) {
	next := 0
	var firstErr error
	var lost []loadJob
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
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
	// builds are the tables (plan indexes, a job's worth each) waiting for their keys and indexes;
	// the tables a round before this one completed come first.
	var builds [][]int
	queued := make([]bool, len(st.plans))
	queueBuild := func(tables []int) {
		var b []int
		for _, i := range tables {
			if st.buildable[i] && !st.built[i] && !queued[i] && w.complete(st, i) {
				queued[i] = true
				b = append(b, i)
			}
		}
		if len(b) > 0 {
			builds = append(builds, b)
		}
	}
	// links are the tables waiting for their foreign keys, added one step at a time: two tables
	// that reference each other, linked at once, could deadlock.
	var links [][]int
	linkQueued := make([]bool, len(st.plans))
	linking := false
	queueLinks := func(tables []int) {
		var l []int
		for _, i := range tables {
			if !linkQueued[i] && st.linkable(i) {
				linkQueued[i] = true
				l = append(l, i)
			}
		}
		if len(l) > 0 {
			links = append(links, l)
		}
	}
	// Once tables have their keys: their foreign keys, and those that reference them.
	linkAfter := func(tables []int) {
		for _, i := range tables {
			if st.built[i] {
				queueLinks(append([]int{i}, st.referencedBy[i]...))
			}
		}
	}
	all := make([]int, len(st.plans))
	for i := range all {
		all[i] = i
	}
	queueBuild(all)
	queueLinks(all)
	running := 0 // jobs, builds and links
	// A free slot waits for a build, a link or a job, or ends when none is left nor can come.
	ready := func() bool {
		return firstErr != nil || lost != nil || len(builds) > 0 || len(links) > 0 && !linking || next < len(jobs) || running == 0
	}
	// At most share chunks run at once: each gets that share of the throttle limits.
	share := min(w.spec.FullLoad.Parallelism, len(jobs)+len(builds)+len(links))
	wg := workflow.NewWaitGroup(ctx)
	for n := 0; n < share; n++ {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			for {
				if err := workflow.Await(ctx, ready); err != nil {
					fail(err)
					return
				}
				switch {
				case firstErr != nil || lost != nil:
					return
				case len(builds) > 0:
					b := builds[0]
					builds = builds[1:]
					running++
					err := w.buildTables(ctx, in.Spec, opts, st, b)
					running--
					if err != nil {
						fail(err)
						return
					}
					linkAfter(b)
				case len(links) > 0 && !linking:
					l := links[0]
					links = links[1:]
					running++
					linking = true
					err := w.linkTables(ctx, in.Spec, opts, st, l)
					linking = false
					running--
					if err != nil {
						fail(err)
						return
					}
				case next < len(jobs):
					j := jobs[next]
					next++
					running++
					err := w.copyJob(ctx, in, opts, j, st, share, pace)
					running--
					if snapshotLost(err) {
						lost = append(lost, j)
						return
					}
					if err != nil {
						fail(err)
						return
					}
					queueBuild(j.tables)
					linkAfter(j.tables) // those the batch's own activity built
				default: // nothing left, nothing running
					return
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

// copyJob copies one job's chunks (after pace lets it start) and counts them in the status.
func (w *task) copyJob(ctx workflow.Context, in api.SchemaInput, opts workflow.ActivityOptions, j loadJob, st *loadState, share int,
	pace func(workflow.Context) error) error {
	if err := pace(ctx); err != nil {
		return err
	}
	for _, i := range j.tables {
		w.status.Tables[st.statusOf[i]].State = api.TableLoading
	}
	var results []api.Result
	var err error
	task := api.CopyTaskOf(in.Spec)
	batch := api.CopyChunksInput{Task: task, Chunks: j.chunks, Snapshot: in.Snapshot, Share: share}
	// A batch's tables (one chunk each) get their keys in the same activity.
	var build []int
	for k, i := range j.tables {
		if st.buildable[i] && len(j.chunks) > 1 {
			build = append(build, k)
		}
	}
	w.copying++
	switch {
	case len(j.chunks) == 1:
		var res api.Result
		err = w.call(ctx, opts, api.ActivityCopyChunk, &res,
			api.CopyChunkInput{Task: task, Chunk: j.chunks[0], Snapshot: in.Snapshot, Share: share})
		results = []api.Result{res}
	case len(build) > 0:
		var done api.CopiedAndBuilt
		err = w.call(ctx, opts, api.ActivityCopyChunksAndBuild, &done, api.CopyAndBuildInput{CopyChunksInput: batch, Build: build, Objects: in.Spec.Objects})
		if err == nil {
			results = done.Results
			w.recordSchema(done.Schema)
			for _, k := range build {
				st.built[j.tables[k]] = true
			}
		}
	default:
		err = w.call(ctx, opts, api.ActivityCopyChunks, &results, batch)
	}
	w.copying--
	if err != nil {
		return err
	}
	for k, res := range results {
		ts := &w.status.Tables[st.statusOf[j.tables[k]]]
		ts.RowsCopied += res.Rows
		ts.BytesCopied += res.Bytes
		ts.ChunksDone++
		w.metrics.table(*ts)
		if ts.ChunksDone == ts.Chunks {
			ts.State = api.TableDone
			if ts.RowsEstimate < ts.RowsCopied {
				ts.RowsEstimate = ts.RowsCopied
			}
		}
	}
	return nil
}

// linkTables adds the foreign keys of tables whose referenced tables have their keys.
func (w *task) linkTables(ctx workflow.Context, s spec.Spec, opts workflow.ActivityOptions, st *loadState, tables []int) error {
	in := api.BuildInput{Spec: s}
	mapped := map[int]bool{}
	for _, i := range tables {
		in.ForeignKeysOf = append(in.ForeignKeysOf, st.plans[i].Table)
		mapped[i] = true
	}
	for _, i := range tables {
		for _, j := range st.refs[i] {
			if !mapped[j] {
				mapped[j] = true
				in.Referenced = append(in.Referenced, st.plans[j].Table)
			}
		}
	}
	return w.runBuild(ctx, opts, in, tables, st.linked)
}

// buildTables adds the keys and indexes of tables whose load is complete.
func (w *task) buildTables(ctx workflow.Context, s spec.Spec, opts workflow.ActivityOptions, st *loadState, tables []int) error {
	in := api.BuildInput{Spec: s, Tables: make([]spec.TableMap, len(tables))}
	for k, i := range tables {
		in.Tables[k] = st.plans[i].Table
	}
	return w.runBuild(ctx, opts, in, tables, st.built)
}

// runBuild runs BuildTables, records its report and marks the tables (plan indexes) done in done.
func (w *task) runBuild(ctx workflow.Context, opts workflow.ActivityOptions, in api.BuildInput, tables []int, done []bool) error {
	var rep api.SchemaReport
	if err := w.call(ctx, opts, api.ActivityBuildTables, &rep, in); err != nil {
		return err
	}
	w.recordSchema(rep)
	for _, i := range tables {
		done[i] = true
	}
	return nil
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
		ts.State, ts.RowsCopied, ts.BytesCopied, ts.ChunksDone = api.TablePending, 0, 0, 0
		ts.Reloads++
		gens[i] = ts.Reloads
	}
	workflow.GetLogger(ctx).Warn("the snapshot holder ended during the full load: tables load again in a new snapshot", "tables", names)
	hold.close(ctx)
	if err := w.call(ctx, stepOptions, api.ActivityResetLoad, nil, api.ResetLoadInput{Spec: s, Tables: tables, Generations: gens}); err != nil {
		return "", err
	}
	next, err := w.openSnapshot(ctx, api.SnapshotInput{Spec: s.Helper(), WithSlot: s.IncrementalSync(), Temporary: true})
	if err != nil {
		return "", err
	}
	*hold = *next
	if s.IncrementalSync() {
		for _, t := range tables {
			w.skipBefore = append(w.skipBefore, api.SkipBefore{Table: t.Source, LSN: next.snap.ConsistentPoint})
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
