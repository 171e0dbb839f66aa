// Package verify proves that the destination holds what the source holds. Tables are cut into key
// ranges; each server hashes its rows of a range (an order-independent sum of row hashes), so rows
// don't cross the network to be compared. A range whose hashes differ is narrowed down to its rows,
// and those are reported by key as missing, extra or different.
//
// While changes stream, a difference may only be a change the apply has not reached yet. Given a
// Settle function (wait until the apply has passed the source's current position), every difference
// is checked again: the source row is read, the apply settles, the destination row is read, and the
// source row once more. A row that differs although the source did not change in between is a real
// difference; one that changed is checked again in the next round.
package verify

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/ddl"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/throttle"
)

// Results of a comparison (api.TableResult, api.Diff).
type (
	TableResult = api.TableResult
	Diff        = api.Diff
)

// Kinds of differences.
const (
	Missing   = "missing"   // on the source, not on the destination
	Extra     = "extra"     // on the destination, not on the source
	Different = "different" // on both, with other values
	Changing  = "changing"  // kept changing on the source through every re-check: not proven either way
)

// Querier runs queries: a *pgx.Conn or a pgx.Tx (for instance one inside the task's snapshot).
type Querier = catalog.Querier

// Pair is one connection to each side. Run uses as many pairs as it is given, one chunk each at a
// time.
type Pair struct {
	Src, Dst Querier
	uses     int // queries since Src was renewed (Options.RenewSource)
}

// Options configure Run.
type Options struct {
	Mode          string // spec.VerifyCount or spec.VerifyChecksum
	SamplePercent int    // share of chunks compared (checksum mode); 0 or 100 = all
	ChunkRows     int64  // rows per key range (default 50,000)
	MaxDiffs      int    // rows listed per table (default 100)
	// NarrowLimit caps the rows of a table without a key that are narrowed down (default 1,000,000).
	NarrowLimit int64
	// Settle waits until the destination has applied every change the source committed before the
	// call. nil when nothing streams (the source is read in the snapshot the destination was
	// loaded from, or the task is finished): then every difference is final.
	Settle func(ctx context.Context) error
	Rounds int // re-check rounds when Settle is set (default 5)
	// Throttle paces the rows compared, and the rows and bytes a repair copies (full-load limits
	// of the task); nil = unlimited.
	Throttle *throttle.Limiter
	// Queries paces the chunks compared, one source query each (throttle.full.source_qps counted
	// as rows); nil = unlimited.
	Queries *throttle.Limiter
	// Mapper maps user types to their destination schema, for key casts.
	Mapper ddl.Mapper
	// Progress is called after every chunk with the chunks done and planned so far.
	Progress func(done, total int)
	// Rand chooses the sampled chunks; nil = a random source.
	Rand *rand.Rand
	// RenewSource, when set, replaces a pair's source querier after RenewEvery uses: a transaction
	// in the load's snapshot holds a lock on every table it read until it ends, and a database of
	// thousands of tables would exhaust the server's lock table (max_locks_per_transaction).
	RenewSource func(ctx context.Context, src Querier) (Querier, error)
	RenewEvery  int // default 100
	// Rotate samples chunks by turn instead of at random: round Round (0, 1, ...) compares every
	// n-th chunk starting with the (Round mod n)-th, n = 100/SamplePercent rounded up, so that n
	// rounds in a row cover every chunk once (scheduled verification).
	Rotate bool
	Round  int
	// OnTargets, when set, is called after the comparison with what differs in table i (Targets),
	// for each table where something does: the rows to repair.
	OnTargets func(i int, t Targets)
	// RangeAt is the number of confirmed differing rows in one chunk from which its whole key
	// range is a repair target instead of its rows (default 1,000). Rows that differ only until
	// the change apply passes them do not count: the range is chosen after the re-check.
	RangeAt int
}

// Table describes one table to verify.
type Table struct {
	Def *catalog.Table // the source definition
	Map spec.TableMap
	// ChunkRows overrides Options.ChunkRows for this table (0 = the option).
	ChunkRows int64
}

// ChunkRowsFor returns the rows of about chunkMB megabytes of t, from its catalog statistics, and
// at least 1,000; 0 when the statistics say nothing.
func ChunkRowsFor(t *catalog.Table, chunkMB int) int64 {
	if t.RowsEstimate <= 0 || t.Blocks <= 0 || chunkMB <= 0 {
		return 0
	}
	rowBytes := max(1, t.Blocks*t.BlockSize/t.RowsEstimate)
	return max(1000, int64(chunkMB)*1024*1024/rowBytes)
}

// Session sets the output formats row hashes depend on, identically on both sides. Run it on every
// connection before Run.
func Session(ctx context.Context, q Querier) error { return settings(ctx, q, "SET ") }

// settings runs Session's settings with set ("SET " or "SET LOCAL ").
func settings(ctx context.Context, q Querier, set string) error {
	for _, setting := range []string{
		"DateStyle = 'ISO, MDY'", "IntervalStyle = 'postgres'", "TimeZone = 'UTC'",
		"extra_float_digits = 1", "bytea_output = 'hex'",
	} {
		set := set + setting
		if _, err := q.Exec(ctx, set); err != nil {
			return fmt.Errorf("%s: %w", set, err)
		}
	}
	return nil
}

// Run compares tables and returns one result each, in order.
func Run(ctx context.Context, pairs []Pair, tables []Table, opts Options) ([]TableResult, error) {
	if len(pairs) == 0 {
		return nil, fmt.Errorf("verify: no connections")
	}
	if opts.ChunkRows <= 0 {
		opts.ChunkRows = 50000
	}
	if opts.MaxDiffs <= 0 {
		opts.MaxDiffs = 100
	}
	if opts.NarrowLimit <= 0 {
		opts.NarrowLimit = 1000000
	}
	if opts.Rounds <= 0 {
		opts.Rounds = 5
	}
	if opts.SamplePercent <= 0 || opts.SamplePercent > 100 {
		opts.SamplePercent = 100
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if opts.RenewEvery <= 0 {
		opts.RenewEvery = 100
	}
	if opts.RangeAt <= 0 {
		opts.RangeAt = 1000
	}
	r := &run{opts: opts, pairs: make(chan Pair, len(pairs))}
	for _, p := range pairs {
		r.pairs <- p
	}
	r.tables = make([]*tableRun, len(tables))
	for i, t := range tables {
		r.tables[i] = newTableRun(t, opts)
	}
	if err := r.plan(ctx); err != nil {
		return nil, err
	}
	if err := r.compare(ctx); err != nil {
		return nil, err
	}
	if opts.Settle != nil {
		if err := r.recheck(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]TableResult, len(r.tables))
	for i, t := range r.tables {
		t.rangeTargets()
		out[i] = t.result()
		if opts.OnTargets != nil && !t.targets.empty() {
			opts.OnTargets(i, t.targets)
		}
	}
	return out, nil
}

// run is one verification: the tables, their chunks, and a pool of connection pairs.
type run struct {
	opts   Options
	pairs  chan Pair
	tables []*tableRun

	mu          sync.Mutex
	done, total int
}

// withPair runs f on a free pair of connections.
func (r *run) withPair(ctx context.Context, f func(Pair) error) error {
	var p Pair
	select {
	case p = <-r.pairs:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { r.pairs <- p }()
	if r.opts.RenewSource != nil && p.uses >= r.opts.RenewEvery {
		src, err := r.opts.RenewSource(ctx, p.Src)
		if err != nil {
			return fmt.Errorf("renew the source transaction: %w", err)
		}
		p.Src, p.uses = src, 0
	}
	p.uses++
	return f(p)
}

// parallel runs f for 0..n-1, as many at once as there are pairs.
func (r *run) parallel(ctx context.Context, n int, f func(ctx context.Context, i int, p Pair) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cap(r.pairs))
	for i := range n {
		g.Go(func() error {
			return r.withPair(gctx, func(p Pair) error { return f(gctx, i, p) })
		})
	}
	return g.Wait()
}

func (r *run) plan(ctx context.Context) error {
	err := r.parallel(ctx, len(r.tables), func(ctx context.Context, i int, p Pair) error {
		return r.tables[i].plan(ctx, p.Src)
	})
	if err != nil {
		return err
	}
	for _, t := range r.tables {
		r.total += len(t.chunks)
	}
	return nil
}

type chunkRef struct{ table, chunk int }

func (r *run) compare(ctx context.Context) error {
	var work []chunkRef
	for ti, t := range r.tables {
		for ci := range t.chunks {
			work = append(work, chunkRef{ti, ci})
		}
	}
	return r.parallel(ctx, len(work), func(ctx context.Context, i int, p Pair) error {
		if err := r.opts.Queries.Wait(ctx, 1, 0); err != nil {
			return err
		}
		t := r.tables[work[i].table]
		rows, err := t.compareChunk(ctx, p, work[i].chunk)
		if err != nil {
			return err
		}
		if err := r.opts.Throttle.Wait(ctx, int(rows), 0); err != nil {
			return err
		}
		r.mu.Lock()
		r.done++
		done, total := r.done, r.total
		r.mu.Unlock()
		if r.opts.Progress != nil {
			r.opts.Progress(done, total)
		}
		return nil
	})
}

// recheck checks every difference again until it is proven or resolved (see the package comment).
func (r *run) recheck(ctx context.Context) error {
	for round := 0; round < r.opts.Rounds; round++ {
		open := false
		for _, t := range r.tables {
			open = open || len(t.candidates) > 0
		}
		if !open {
			return nil
		}
		before := make([]map[string]string, len(r.tables))
		err := r.parallel(ctx, len(r.tables), func(ctx context.Context, i int, p Pair) error {
			var err error
			before[i], err = r.tables[i].fingerprints(ctx, p.Src, true)
			return err
		})
		if err != nil {
			return err
		}
		if err := r.opts.Settle(ctx); err != nil {
			return err
		}
		err = r.parallel(ctx, len(r.tables), func(ctx context.Context, i int, p Pair) error {
			t := r.tables[i]
			dst, err := t.fingerprints(ctx, p.Dst, false)
			if err != nil {
				return err
			}
			after, err := t.fingerprints(ctx, p.Src, true)
			if err != nil {
				return err
			}
			t.settle(before[i], dst, after)
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, t := range r.tables {
		for _, k := range t.candidates {
			t.add(Diff{Kind: Changing, Key: t.display[k]})
			t.target(k)
		}
		t.candidates = nil
	}
	return nil
}

// chunk is a key range (lower, upper]; nil bounds are open.
type chunk struct {
	lower, upper []string
}

// tableRun is the state of one table's comparison.
type tableRun struct {
	Table
	opts    Options
	src     sideSQL
	dst     sideSQL
	keyed   bool
	chunks  []chunk
	checked int

	mu         sync.Mutex
	res        TableResult
	candidates []string          // keys of differences still to prove (with Settle)
	display    map[string]string // key -> how it is shown
	keyValues  map[string][]string
	targets    Targets
	chunkOf    map[string]int // the chunk of each differing key (a keyed table's)
	confirmed  []string       // keys of a keyed table's confirmed differences
}

// sideSQL holds one side's names, quoted.
type sideSQL struct {
	table   string
	filter  string   // the row filter, on the source side: "(expr)" or ""
	rowText string   // ROW(c1, c2, ...)::pg_catalog.text
	keys    []string // key columns
	casts   []string // key column types, for parameters
}

func newTableRun(t Table, opts Options) *tableRun {
	tr := &tableRun{Table: t, opts: opts, display: map[string]string{}, keyValues: map[string][]string{}, chunkOf: map[string]int{}}
	tr.res = TableResult{Source: t.Map.Source.String(), Destination: t.Map.Dest.String(), Mode: opts.Mode}
	// ONLY: each table compares its own rows; partitions and inheriting tables compare theirs.
	tr.src.table = "ONLY " + t.Map.Source.Quoted()
	tr.src.filter = t.Map.WhereSQL()
	tr.dst.table = "ONLY " + t.Map.Dest.Quoted()
	var srcCols, dstCols []string
	for _, c := range t.Def.CopyColumns() {
		srcCols = append(srcCols, pgx.Identifier{c.Name}.Sanitize())
		dstCols = append(dstCols, pgx.Identifier{t.Map.DestColumn(c.Name)}.Sanitize())
	}
	tr.src.rowText = "ROW(" + strings.Join(srcCols, ", ") + ")::pg_catalog.text"
	tr.dst.rowText = "ROW(" + strings.Join(dstCols, ", ") + ")::pg_catalog.text"
	for _, k := range t.Def.Key() {
		col := t.Def.Column(k)
		tr.src.keys = append(tr.src.keys, pgx.Identifier{k}.Sanitize())
		tr.dst.keys = append(tr.dst.keys, pgx.Identifier{t.Map.DestColumn(k)}.Sanitize())
		tr.src.casts = append(tr.src.casts, ddl.TypeSQL(col.Type, identityMapper{}))
		tr.dst.casts = append(tr.dst.casts, ddl.TypeSQL(col.Type, opts.Mapper))
	}
	tr.keyed = len(tr.src.keys) > 0
	return tr
}

// identityMapper maps nothing: source names stay as they are.
type identityMapper struct{}

func (identityMapper) Schema(s string) string { return s }
func (identityMapper) Table(q spec.QName) (spec.TableMap, bool) {
	return spec.TableMap{Source: q, Dest: q}, true
}

// plan cuts the table into key ranges of about ChunkRows rows and picks the sampled ones.
func (t *tableRun) plan(ctx context.Context, src Querier) error {
	if t.opts.Mode != spec.VerifyChecksum || !t.keyed {
		t.chunks = []chunk{{}}
		t.res.Chunks, t.res.ChunksChecked = 1, 1
		return nil
	}
	keys := strings.Join(t.src.keys, ", ")
	texts := make([]string, len(t.src.keys))
	for i, k := range t.src.keys {
		texts[i] = k + "::pg_catalog.text"
	}
	q := fmt.Sprintf(`SELECT %s FROM (SELECT %s, pg_catalog.row_number() OVER (ORDER BY %s) AS "skein_rn" FROM %s%s) AS s
WHERE "skein_rn" %% $1 = 0 ORDER BY "skein_rn"`, strings.Join(texts, ", "), keys, keys, t.src.table, t.src.filterClause())
	chunkRows := t.ChunkRows
	if chunkRows <= 0 {
		chunkRows = t.opts.ChunkRows
	}
	var bounds [][]string
	if maxRowsIn(t.Def) >= chunkRows { // else the query finds no bound: one chunk, without asking
		rows, err := src.Query(ctx, q, chunkRows)
		if err != nil {
			return fmt.Errorf("verify %s: plan key ranges: %w", t.Map.Source, err)
		}
		for rows.Next() {
			b, err := scanStrings(rows, len(t.src.keys))
			if err != nil {
				return fmt.Errorf("verify %s: plan key ranges: %w", t.Map.Source, err)
			}
			bounds = append(bounds, b)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("verify %s: plan key ranges: %w", t.Map.Source, err)
		}
	}
	var all []chunk
	var lower []string
	for _, b := range bounds {
		all = append(all, chunk{lower: lower, upper: b})
		lower = b
	}
	all = append(all, chunk{lower: lower})
	t.res.Chunks = len(all)
	if t.opts.Rotate {
		t.chunks = rotate(all, t.opts.SamplePercent, t.opts.Round)
	} else {
		t.chunks = sample(all, t.opts.SamplePercent, t.opts.Rand)
	}
	t.res.ChunksChecked = len(t.chunks)
	return nil
}

// maxRowsIn is the most rows the blocks of def can hold: a heap page holds at most (block size -
// page header) / (tuple header + line pointer) rows (PostgreSQL's MaxHeapTuplesPerPage, 291 at
// 8 kB). A table that cannot hold a chunk's rows is one chunk, and its key ranges need no query (a
// schema of thousands of small tables saves a round trip per table). Blocks is the table's size
// when the comparison read its definition, in or after the snapshot it reads: the rows a snapshot
// sees are in those blocks. Without a snapshot, rows added since only make the one chunk larger.
// Another table access method (a columnar store) has no such bound: it is always cut.
func maxRowsIn(def *catalog.Table) int64 {
	if def.AccessMethod != "" && def.AccessMethod != "heap" {
		return math.MaxInt64
	}
	size := def.BlockSize
	if size <= 0 {
		size = 8192
	}
	return def.Blocks * ((size - pageHeader) / (tupleHeader + linePointer))
}

// Sizes in a heap page (PostgreSQL's SizeOfPageHeaderData, MAXALIGN(SizeofHeapTupleHeader) and
// sizeof(ItemIdData)).
const (
	pageHeader  = 24
	tupleHeader = 24
	linePointer = 4
)

// sample picks percent of the chunks (at least one), in key order.
func sample(all []chunk, percent int, rnd *rand.Rand) []chunk {
	if percent >= 100 {
		return all
	}
	n := max(1, (len(all)*percent+99)/100)
	idx := rnd.Perm(len(all))[:n]
	sort.Ints(idx)
	out := make([]chunk, n)
	for i, j := range idx {
		out[i] = all[j]
	}
	return out
}

// rotate picks round's share of the chunks: every n-th one, n = 100/percent rounded up.
func rotate(all []chunk, percent, round int) []chunk {
	n := (100 + percent - 1) / percent
	if n <= 1 {
		return all
	}
	var out []chunk
	for i := ((round % n) + n) % n; i < len(all); i += n {
		out = append(out, all[i])
	}
	if len(out) == 0 {
		out = append(out, all[len(all)-1])
	}
	return out
}

func scanStrings(rows pgx.Rows, n int) ([]string, error) {
	vals := make([]string, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	return vals, rows.Scan(ptrs...)
}

// filterClause is " WHERE (expr)" for a filtered source, else "".
func (s sideSQL) filterClause() string {
	if s.filter == "" {
		return ""
	}
	return " WHERE " + s.filter
}

// where renders a chunk's key range and the row filter for one side; args are its parameters.
func (s sideSQL) where(c chunk) (string, []any) {
	var args []any
	where := s.whereWith(c, func(v string) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	})
	return where, args
}

// whereWith renders a chunk's key range and the row filter, each bound value as bind writes it
// (a parameter, or a literal where no parameters can be: COPY).
func (s sideSQL) whereWith(c chunk, bind func(v string) string) string {
	var conds []string
	if s.filter != "" {
		conds = append(conds, s.filter)
	}
	bound := func(op string, vals []string) {
		params := make([]string, len(vals))
		for i, v := range vals {
			params[i] = fmt.Sprintf("%s::%s", bind(v), s.casts[i])
		}
		conds = append(conds, fmt.Sprintf("(%s) %s (%s)", strings.Join(s.keys, ", "), op, strings.Join(params, ", ")))
	}
	if c.lower != nil {
		bound(">", c.lower)
	}
	if c.upper != nil {
		bound("<=", c.upper)
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// measure counts (and in checksum mode hashes) one side's rows of a chunk.
func (s sideSQL) measure(ctx context.Context, q Querier, c chunk, mode string) (int64, string, error) {
	where, args := s.where(c)
	var n int64
	if mode == spec.VerifyCount {
		err := q.QueryRow(ctx, "SELECT pg_catalog.count(*) FROM "+s.table+where, args...).Scan(&n)
		return n, "", err
	}
	// Each row hashes to 64 bits of its md5; the sum (numeric: no overflow) does not depend on
	// row order and needs no memory beyond the aggregate's.
	var sum string
	err := q.QueryRow(ctx, fmt.Sprintf(`SELECT pg_catalog.count(*),
  COALESCE(pg_catalog.sum(('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(%s), 1, 16))::pg_catalog.bit(64)::pg_catalog.int8::pg_catalog.numeric), 0)::pg_catalog.text
FROM %s%s`, s.rowText, s.table, where), args...).Scan(&n, &sum)
	return n, sum, err
}

// compareChunk compares one chunk and narrows a difference down to rows. It returns the rows read.
func (t *tableRun) compareChunk(ctx context.Context, p Pair, ci int) (int64, error) {
	c := t.chunks[ci]
	// Both sides at once, each on its own server: a chunk takes the slower side's time, not the
	// sum. A failed source ends the destination's query too.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var dn int64
	var dh string
	var derr error
	measured := make(chan struct{})
	go func() {
		defer close(measured)
		dn, dh, derr = t.dst.measure(dctx, p.Dst, c, t.opts.Mode)
	}()
	sn, sh, err := t.src.measure(ctx, p.Src, c, t.opts.Mode)
	if err != nil {
		cancel()
	}
	<-measured
	if err != nil {
		return 0, fmt.Errorf("verify %s on the source: %w", t.Map.Source, err)
	}
	if derr != nil {
		return 0, fmt.Errorf("verify %s on the destination: %w", t.Map.Dest, derr)
	}
	t.mu.Lock()
	t.res.SourceRows += sn
	t.res.DestRows += dn
	t.mu.Unlock()
	if sn == dn && sh == dh {
		return sn, nil
	}
	if t.opts.Mode == spec.VerifyCount {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.opts.Settle != nil {
			t.candidates = append(t.candidates, "")
			t.display[""] = "row count"
			return sn, nil
		}
		t.targets.Whole = true // a count names no rows
		t.countDiff(sn, dn)
		return sn, nil
	}
	if !t.keyed && max(sn, dn) > t.opts.NarrowLimit {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.targets.Whole = true
		t.res.Note = fmt.Sprintf("the table has no key and more than %d rows: rows are not narrowed down", t.opts.NarrowLimit)
		t.countDiff(sn, dn)
		if sn == dn {
			t.add(Diff{Kind: Different, Key: "(rows differ; the table has no key)"})
		}
		return sn, nil
	}
	src, err := t.rows(ctx, p.Src, true, c)
	if err != nil {
		return 0, fmt.Errorf("verify %s on the source: %w", t.Map.Source, err)
	}
	dst, err := t.rows(ctx, p.Dst, false, c)
	if err != nil {
		return 0, fmt.Errorf("verify %s on the destination: %w", t.Map.Dest, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	differing := differingKeys(src, dst)
	for _, k := range differing {
		if t.keyed {
			t.chunkOf[k] = ci
		}
		if t.opts.Settle != nil {
			t.candidates = append(t.candidates, k)
			continue
		}
		t.addDiff(k, src[k], dst[k])
	}
	return sn, nil
}

// countDiff records a row-count difference of a table compared without narrowing.
func (t *tableRun) countDiff(src, dst int64) {
	switch {
	case src > dst:
		t.res.Missing += src - dst
	case dst > src:
		t.res.Extra += dst - src
	}
}

// fp is a row's fingerprint on one side: the md5 of its text for a keyed table, the number of
// copies for a table without a key.
type fp = string

// rows reads a chunk's fingerprints, by key. It records how each key is shown.
func (t *tableRun) rows(ctx context.Context, q Querier, source bool, c chunk) (map[string]fp, error) {
	s := t.side(source)
	if !t.keyed {
		return t.readFingerprints(ctx, q, s, "", nil) // one chunk: the whole (filtered) table
	}
	where, args := s.where(c)
	return t.readFingerprints(ctx, q, s, where, args)
}

func (t *tableRun) side(source bool) sideSQL {
	if source {
		return t.src
	}
	return t.dst
}

// readFingerprints runs the fingerprint query of side s with a condition.
func (t *tableRun) readFingerprints(ctx context.Context, q Querier, s sideSQL, where string, args []any) (map[string]fp, error) {
	var sql string
	if t.keyed {
		texts := make([]string, len(s.keys))
		for i, k := range s.keys {
			texts[i] = k + "::pg_catalog.text"
		}
		sql = fmt.Sprintf("SELECT %s, pg_catalog.md5(%s) FROM %s%s", strings.Join(texts, ", "), s.rowText, s.table, where)
	} else {
		// The filter applies inside; where (over "skein_rt") outside.
		sql = fmt.Sprintf(`SELECT pg_catalog.md5("skein_rt"), '', pg_catalog.count(*)::pg_catalog.text
FROM (SELECT %s AS "skein_rt" FROM %s%s) AS s%s GROUP BY 1`, s.rowText, s.table, s.filterClause(), where)
	}
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]fp{}
	for rows.Next() {
		if t.keyed {
			vals, err := scanStrings(rows, len(s.keys)+1)
			if err != nil {
				return nil, err
			}
			key := strings.Join(vals[:len(s.keys)], "\x00")
			out[key] = vals[len(s.keys)]
			t.remember(key, vals[:len(s.keys)])
			continue
		}
		vals, err := scanStrings(rows, 3)
		if err != nil {
			return nil, err
		}
		out[vals[0]] = vals[2]
		t.mu.Lock()
		// A row without a key is named by its hash, never by its values (pkg/redact).
		t.display[vals[0]] = "row md5 " + vals[0]
		t.mu.Unlock()
	}
	return out, rows.Err()
}

func (t *tableRun) remember(key string, vals []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.display[key]; ok {
		return
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = t.Def.Key()[i] + "=" + v
	}
	t.display[key] = strings.Join(parts, ", ")
	t.keyValues[key] = vals
}

// fingerprints reads the current fingerprints of the candidate keys on one side.
func (t *tableRun) fingerprints(ctx context.Context, q Querier, source bool) (map[string]fp, error) {
	if len(t.candidates) == 0 {
		return nil, nil
	}
	s := t.side(source)
	if t.opts.Mode == spec.VerifyCount {
		n, _, err := s.measure(ctx, q, chunk{}, spec.VerifyCount)
		return map[string]fp{"": fmt.Sprint(n)}, err
	}
	var where string
	var args []any
	if t.keyed {
		keys := make([][]string, len(t.candidates))
		for i, k := range t.candidates {
			keys[i] = t.keyValues[k]
		}
		where, args = s.keyList(keys, false)
	} else {
		where = ` WHERE pg_catalog.md5("skein_rt") = ANY($1::pg_catalog.text[])`
		args = []any{t.candidates}
	}
	out, err := t.readFingerprints(ctx, q, s, where, args)
	if err != nil {
		side := "destination"
		if source {
			side = "source"
		}
		return nil, fmt.Errorf("verify %s: re-check on the %s: %w", t.Map.Source, side, err)
	}
	return out, nil
}

// settle sorts the candidates after one re-check round: equal now (resolved), different although
// the source stayed the same (proven), or changed on the source (next round).
func (t *tableRun) settle(before, dst, after map[string]fp) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var next []string
	for _, k := range t.candidates {
		switch {
		case dst[k] == after[k]:
		case before[k] == after[k]:
			if t.opts.Mode == spec.VerifyCount {
				t.targets.Whole = true
				t.countDiff(count(after[k]), count(dst[k]))
				continue
			}
			t.addDiff(k, after[k], dst[k])
		default:
			next = append(next, k)
		}
	}
	t.candidates = next
}

// addDiff records the difference of key k given its source and destination fingerprints.
func (t *tableRun) addDiff(k string, src, dst fp) {
	t.target(k)
	show := t.display[k]
	if !t.keyed {
		s, d := count(src), count(dst)
		for ; s > d; s-- {
			t.add(Diff{Kind: Missing, Key: show})
		}
		for ; d > s; d-- {
			t.add(Diff{Kind: Extra, Key: show})
		}
		return
	}
	switch {
	case dst == "":
		t.add(Diff{Kind: Missing, Key: show})
	case src == "":
		t.add(Diff{Kind: Extra, Key: show})
	default:
		t.add(Diff{Kind: Different, Key: show})
	}
}

// target makes the confirmed difference k a repair target: a keyed table's key (as a row or
// within its chunk's range, see rangeTargets), the row's md5 for a table without a key, the whole
// table for a count.
func (t *tableRun) target(k string) {
	switch {
	case t.opts.Mode == spec.VerifyCount:
		t.targets.Whole = true
	case t.targets.Whole:
	case t.keyed:
		t.confirmed = append(t.confirmed, k)
	case k != "":
		t.targets.Hashes = append(t.targets.Hashes, k)
	}
}

// rangeTargets turns a keyed table's confirmed differences into repair targets: the key range of
// a chunk with RangeAt or more of them, the rows of the others.
func (t *tableRun) rangeTargets() {
	if t.targets.Whole {
		return
	}
	perChunk := map[int]int{}
	for _, k := range t.confirmed {
		perChunk[t.chunkOf[k]]++
	}
	ranged := func(ci int) bool { return perChunk[ci] >= t.opts.RangeAt }
	for ci, c := range t.chunks {
		if ranged(ci) {
			t.targets.Ranges = append(t.targets.Ranges, Range{Lower: c.lower, Upper: c.upper})
		}
	}
	for _, k := range t.confirmed {
		if !ranged(t.chunkOf[k]) {
			t.targets.Keys = append(t.targets.Keys, t.keyValues[k])
		}
	}
	t.confirmed = nil
}

// count reads a count fingerprint; a row absent on one side ("") counts 0.
func count(f fp) int64 {
	n, _ := strconv.ParseInt(f, 10, 64)
	return n
}

func (t *tableRun) add(d Diff) {
	switch d.Kind {
	case Missing:
		t.res.Missing++
	case Extra:
		t.res.Extra++
	case Different:
		t.res.Different++
	case Changing:
		t.res.Changing++
	}
	if len(t.res.Diffs) < t.opts.MaxDiffs {
		t.res.Diffs = append(t.res.Diffs, d)
	}
}

// differingKeys lists the keys whose fingerprints differ between src and dst, sorted.
func differingKeys(src, dst map[string]fp) []string {
	var out []string
	for k, v := range src {
		if dst[k] != v {
			out = append(out, k)
		}
	}
	for k := range dst {
		if _, ok := src[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (t *tableRun) result() TableResult {
	r := t.res
	r.Equal = r.Missing == 0 && r.Extra == 0 && r.Different == 0 && r.Changing == 0
	return r
}
