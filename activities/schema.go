package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/ddl"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/spec"
)

// SchemaReport says what a schema stage did (api.SchemaReport).
type SchemaReport = api.SchemaReport

// SchemaInput is api.SchemaInput.
type SchemaInput = api.SchemaInput

// SchemaPreData creates, on the destination, the schemas, sequences and tables the full load needs
// (no keys, indexes or foreign keys yet), and Skein's bookkeeping tables. The definitions are read
// inside the task's snapshot, so they match the data the load copies.
func (a *Activities) SchemaPreData(ctx context.Context, in SchemaInput) (SchemaReport, error) {
	var rep SchemaReport
	sd, err := a.openSides(ctx, in.Spec, in.Tables, in.Snapshot)
	if err != nil {
		return rep, classifySnapshotRead(ctx, err)
	}
	defer sd.close(ctx)
	// Partitioned tables before their partitions.
	sd.defs, in.Tables = catalog.ParentsFirst(sd.defs, in.Tables)
	dst, defs := sd.dst, sd.defs
	seqs, err := loadAllSequences(ctx, sd.tx, in.Spec, defs)
	if err != nil {
		return rep, classifyDDL(ctx, err)
	}
	m := ddl.SpecMapper{Objects: in.Spec.Objects, Tables: in.Tables}
	if err := bookkeeping.Ensure(ctx, dst); err != nil {
		return rep, classifyDDL(ctx, err)
	}
	run := func(what, stmt string) error {
		if _, err := dst.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create %s: %w\n%s", what, err, stmt)
		}
		rep.Created = append(rep.Created, what)
		return nil
	}
	schemas := map[string]bool{}
	for _, tm := range in.Tables {
		if !schemas[tm.Dest.Schema] {
			schemas[tm.Dest.Schema] = true
			if err := run("schema "+tm.Dest.Schema, ddl.CreateSchema(tm.Dest.Schema)); err != nil {
				return rep, classifyDDL(ctx, err)
			}
		}
	}
	ensureSchema := func(schema string) error {
		if schemas[schema] {
			return nil
		}
		schemas[schema] = true
		return run("schema "+schema, ddl.CreateSchema(schema))
	}
	// Every whole schema, also one without tables (its views, functions or types are created
	// in it).
	for _, schema := range wholeSchemas(in.Spec) {
		if err := ensureSchema(m.Schema(schema)); err != nil {
			return rep, classifyDDL(ctx, err)
		}
	}
	if err := createExtensions(ctx, sd, in, m, &rep); err != nil {
		return rep, classifyDDL(ctx, err)
	}
	steps, err := a.preDataSteps(ctx, sd, in, m, seqs, ensureSchema, run, &rep)
	if err != nil {
		return rep, classifyDDL(ctx, err)
	}
	// What the destination cannot create (a C function whose library it cannot load) is
	// reported by name, and so is everything that needs it; the rest is created.
	notCreated := map[catalog.Ref]string{}
steps:
	for _, st := range steps {
		for _, d := range st.deps {
			if what, ok := notCreated[d]; ok {
				notCreated[st.ref] = st.what
				rep.Warned = append(rep.Warned, fmt.Sprintf("%s: not created: it needs %s, which was not created", st.what, what))
				continue steps
			}
		}
		if st.skip != "" {
			notCreated[st.ref] = st.what
			rep.Warned = append(rep.Warned, fmt.Sprintf("%s: not created: %s; create it by hand", st.what, st.skip))
			continue
		}
		err := st.run()
		if err != nil && st.unable != nil {
			if why, ok := st.unable(err); ok {
				notCreated[st.ref] = st.what
				rep.Warned = append(rep.Warned, fmt.Sprintf("%s: not created: %s", st.what, why))
				continue
			}
		}
		if err != nil {
			return rep, classifyDDL(ctx, err)
		}
	}
	for _, sq := range seqs {
		if sq.Identity || sq.OwnedBy == nil {
			continue
		}
		tm, ok := m.Table(*sq.OwnedBy)
		if !ok {
			continue
		}
		if _, err := dst.Exec(ctx, ddl.SequenceOwnedBy(sq, tm, m)); err != nil {
			return rep, classifyDDL(ctx, fmt.Errorf("sequence %s owned by %s: %w", sq.Name, tm.Dest, err))
		}
	}
	// The tables' state in the snapshot: the base the schema changes that stream after it are
	// applied against.
	if in.Spec.CapturesSchemaChanges() && len(defs) > 0 {
		oids := make([]uint32, len(defs))
		for i, t := range defs {
			oids[i] = t.OID
		}
		found, err := ddlcapture.LoadTables(ctx, sd.tx, oids, defs[0].ServerVersion)
		if err != nil {
			return rep, classifyDDL(ctx, err)
		}
		var states []*ddlcapture.Table
		var tms []spec.TableMap
		for i, t := range defs {
			if st := found[t.OID]; st != nil {
				states, tms = append(states, st), append(tms, in.Tables[i])
			}
		}
		if err := cdc.RecordTables(ctx, dst, in.Spec.Name, states, tms); err != nil {
			return rep, classifyDDL(ctx, err)
		}
	}
	a.logger(ctx).Info("schema pre-data done", zap.Int("created", len(rep.Created)))
	return rep, nil
}

// SchemaPostData adds, after the load, primary keys, unique constraints and foreign keys, and sets
// the destination sequences to the source's values. Constraints that exist already are skipped,
// so a retried step finishes without errors or duplicates.
func (a *Activities) SchemaPostData(ctx context.Context, in SchemaInput) (SchemaReport, error) {
	var rep SchemaReport
	sd, err := a.openSides(ctx, in.Spec, in.Tables, "")
	if err != nil {
		return rep, classifyDDL(ctx, err)
	}
	defer sd.close(ctx)
	// Keys on partitioned tables first: their partitions get them from there.
	sd.defs, in.Tables = catalog.ParentsFirst(sd.defs, in.Tables)
	dst, defs := sd.dst, sd.defs
	stop := heartbeatEvery(ctx, 10*time.Second, func() any { return len(rep.Created) })
	defer stop()
	m := ddl.SpecMapper{Objects: in.Spec.Objects, Tables: in.Tables}
	// The tables whose keys and indexes the load built (BuildTables): only their foreign keys
	// are left.
	wasBuilt, wasLinked := map[spec.QName]bool{}, map[spec.QName]bool{} // by source name
	for _, q := range in.Built {
		wasBuilt[q] = true
	}
	for _, q := range in.Linked {
		wasLinked[q] = true
	}
	built := map[spec.QName]bool{} // by destination name
	for _, tm := range in.Tables {
		if wasBuilt[tm.Source] {
			built[tm.Dest] = true
		}
	}
	var all []ddl.Constraint
	for i, t := range defs {
		if wasLinked[in.Tables[i].Source] {
			continue
		}
		stmts, skipped := ddl.PostData(t, in.Tables[i], m)
		all = append(all, stmts...)
		rep.Warned = append(rep.Warned, skipped...)
	}
	// Every key before any foreign key (a foreign key needs the referenced table's key), and the
	// secondary indexes in between.
	slices.SortStableFunc(all, func(a, b ddl.Constraint) int { return kindRank(a.Kind) - kindRank(b.Kind) })
	for _, c := range all {
		if c.Kind != "f" && !built[c.Table] {
			if err := addConstraint(ctx, dst, c, &rep); err != nil {
				return rep, classifyDDL(ctx, err)
			}
		}
	}
	// Secondary indexes, built in parallel: first those of tables that are not partitions, then
	// the partitions' (most of which their parent's indexes created already).
	waves := make([][]ddlJob, 2)
	for i, t := range defs {
		if built[in.Tables[i].Dest] {
			continue
		}
		jobs, err := indexJobs(ctx, sd.tx, t, in.Tables[i], m)
		if err != nil {
			return rep, classifyDDL(ctx, err)
		}
		wave := 0
		if t.PartitionOf != nil {
			wave = 1
		}
		waves[wave] = append(waves[wave], jobs...)
	}
	for _, jobs := range waves {
		if err := a.runParallel(ctx, in.Spec, dst, jobs); err != nil {
			return rep, classifyDDL(ctx, err)
		}
		for _, j := range jobs {
			rep.Created = append(rep.Created, j.what)
		}
	}
	for _, jobs := range waves {
		for _, j := range jobs {
			if j.attach == "" {
				continue
			}
			if _, err := dst.Exec(ctx, j.attach); err != nil {
				return rep, classifyDDL(ctx, fmt.Errorf("%s: %w\n%s", j.what, err, j.attach))
			}
		}
	}
	for _, c := range all {
		if c.Kind == "f" {
			if err := addConstraint(ctx, dst, c, &rep); err != nil {
				return rep, classifyDDL(ctx, err)
			}
		}
	}
	if err := postDataObjects(ctx, sd, in, m, &rep); err != nil {
		return rep, classifyDDL(ctx, err)
	}
	seqs, err := loadAllSequences(ctx, sd.tx, in.Spec, defs)
	if err != nil {
		return rep, classifyDDL(ctx, err)
	}
	if _, err := syncSequences(ctx, dst, seqs, m, 0); err != nil {
		return rep, classifyDDL(ctx, err)
	}
	a.logger(ctx).Info("schema post-data done", zap.Int("created", len(rep.Created)), zap.Int("skipped", len(rep.Skipped)))
	return rep, nil
}

func kindRank(kind string) int { return strings.Index("puxf", kind) }

// addConstraint adds c unless the table has it already (a retried step, a table kept by
// conflict_mode: ignore, which may have its primary key under another name), and reports it.
func addConstraint(ctx context.Context, dst *pgx.Conn, c ddl.Constraint, rep *SchemaReport) error {
	var exists bool
	if err := dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
WHERE conrelid = pg_catalog.to_regclass($1) AND (conname = $2 OR ($3 AND contype = 'p')))`, c.Table.Quoted(), c.Name, c.Kind == "p").Scan(&exists); err != nil {
		return fmt.Errorf("look up constraint %s on %s: %w", c.Name, c.Table, err)
	}
	what := fmt.Sprintf("constraint %s on %s", c.Name, c.Table)
	if exists {
		rep.Skipped = append(rep.Skipped, what)
		return nil
	}
	if _, err := dst.Exec(ctx, c.SQL); err != nil {
		return fmt.Errorf("create %s: %w\n%s", what, err, c.SQL)
	}
	rep.Created = append(rep.Created, what)
	return nil
}

// indexJobs lists the statements that create t's secondary indexes (IF NOT EXISTS: a retried step
// creates none twice).
func indexJobs(ctx context.Context, tx pgx.Tx, t *catalog.Table, tm spec.TableMap, m ddl.SpecMapper) ([]ddlJob, error) {
	indexes, err := catalog.LoadIndexes(ctx, tx, t)
	if err != nil {
		return nil, err
	}
	jobs := make([]ddlJob, len(indexes))
	for i, ix := range indexes {
		jobs[i] = ddlJob{what: fmt.Sprintf("index %s on %s", ix.Name, tm.Dest), sql: ddl.CreateIndex(ix, tm, m)}
		jobs[i].attach, _ = ddl.AttachIndex(ix, tm, m)
	}
	return jobs, nil
}

// BuildInput is api.BuildInput.
type BuildInput = api.BuildInput

// BuildTables adds, while the rest of the load goes on, the primary keys, unique and exclusion
// constraints and secondary indexes of tables whose every chunk is committed, and the foreign keys
// of tables whose referenced tables have their keys (not of partitioned tables or partitions:
// those wait for SchemaPostData). It runs on one destination connection, a share of
// full_load.parallelism like a chunk. What exists already is skipped, so a retried build creates
// nothing twice.
func (a *Activities) BuildTables(ctx context.Context, in BuildInput) (SchemaReport, error) {
	var rep SchemaReport
	n := len(in.Tables)
	sd, err := a.openSides(ctx, in.Spec, append(slices.Clip(in.Tables), in.ForeignKeysOf...), "")
	if err != nil {
		return rep, classifyDDL(ctx, err)
	}
	defer sd.close(ctx)
	stop := heartbeatEvery(ctx, 10*time.Second, func() any { return len(rep.Created) })
	defer stop()
	m := ddl.SpecMapper{Objects: in.Spec.Objects, Tables: slices.Concat(in.Tables, in.ForeignKeysOf, in.Referenced)}
	for i, t := range sd.defs {
		tm := m.Tables[i]
		if t.PartitionOf != nil || t.PartitionKey != "" {
			return rep, classifyDDL(ctx, fmt.Errorf("build keys of %s: a partitioned table or partition is built after the load", tm.Source))
		}
		stmts, skipped := ddl.PostData(t, tm, m)
		if i >= n { // foreign keys (the warnings are theirs)
			rep.Warned = append(rep.Warned, skipped...)
			for _, c := range stmts {
				if c.Kind == "f" {
					if err := addConstraint(ctx, sd.dst, c, &rep); err != nil {
						return rep, classifyDDL(ctx, err)
					}
				}
			}
			continue
		}
		slices.SortStableFunc(stmts, func(a, b ddl.Constraint) int { return kindRank(a.Kind) - kindRank(b.Kind) })
		for _, c := range stmts {
			if c.Kind == "f" {
				continue
			}
			if err := addConstraint(ctx, sd.dst, c, &rep); err != nil {
				return rep, classifyDDL(ctx, err)
			}
		}
		jobs, err := indexJobs(ctx, sd.tx, t, tm, m)
		if err != nil {
			return rep, classifyDDL(ctx, err)
		}
		for _, j := range jobs {
			if _, err := sd.dst.Exec(ctx, j.sql); err != nil {
				return rep, classifyDDL(ctx, fmt.Errorf("create %s: %w\n%s", j.what, err, j.sql))
			}
			rep.Created = append(rep.Created, j.what)
		}
	}
	a.logger(ctx).Info("keys and indexes built", zap.Int("tables", n), zap.Int("foreign_keys_of", len(in.ForeignKeysOf)),
		zap.Int("created", len(rep.Created)))
	rep.Created = summarized(rep.Created, "created")
	rep.Skipped = summarized(rep.Skipped, "skipped (they exist)")
	return rep, nil
}

// reportItems is how many objects a report of BuildTables names one by one: the report of a batch
// of a hundred tables is one line in the history, not a hundred (a schema of 10,000 tables).
const reportItems = 20

// summarized is items, or, when there are more than reportItems, one line that counts them.
func summarized(items []string, what string) []string {
	if len(items) <= reportItems {
		return items
	}
	return []string{fmt.Sprintf("%d constraints and indexes %s, from %s to %s", len(items), what, items[0], items[len(items)-1])}
}

// SequencesInput is api.SequencesInput.
type SequencesInput = api.SequencesInput

// SyncSequences sets every synchronized sequence and identity column on the destination to the
// source's current value plus Offset (for cutover: apply does not move sequences). It returns
// "destination sequence = value" lines.
func (a *Activities) SyncSequences(ctx context.Context, in SequencesInput) ([]string, error) {
	sd, err := a.openSides(ctx, in.Spec, in.Tables, "")
	if err != nil {
		return nil, classifyDDL(ctx, err)
	}
	defer sd.close(ctx)
	seqs, err := loadAllSequences(ctx, sd.tx, in.Spec, sd.defs)
	if err != nil {
		return nil, classifyDDL(ctx, err)
	}
	set, err := syncSequences(ctx, sd.dst, seqs, ddl.SpecMapper{Objects: in.Spec.Objects, Tables: in.Tables}, in.Offset)
	if err != nil {
		return nil, classifyDDL(ctx, err)
	}
	a.logger(ctx).Info("destination sequences set from the source", zap.Int("sequences", len(set)), zap.Int64("offset", in.Offset))
	return set, nil
}

// syncSequences sets each destination sequence (serial and identity) to the source's state plus
// offset, and says what it set.
func syncSequences(ctx context.Context, dst *pgx.Conn, seqs []catalog.Sequence, m ddl.SpecMapper, offset int64) ([]string, error) {
	var set []string
	for _, sq := range seqs {
		value, called := sq.LastValue+offset, sq.IsCalled || offset > 0
		name := ddl.MapSequence(sq.Name, m)
		if sq.Identity && sq.OwnedBy != nil {
			tm, ok := m.Table(*sq.OwnedBy)
			if !ok {
				continue
			}
			var s *string
			if err := dst.QueryRow(ctx, `SELECT pg_catalog.pg_get_serial_sequence($1, $2)`, tm.Dest.Quoted(), tm.DestColumn(sq.OwnedCol)).Scan(&s); err != nil {
				return nil, fmt.Errorf("find identity sequence of %s.%s: %w", tm.Dest, sq.OwnedCol, err)
			}
			if s == nil {
				continue
			}
			if _, err := dst.Exec(ctx, fmt.Sprintf("SELECT pg_catalog.setval(%s::pg_catalog.regclass, %d, %t)",
				catalog.QuoteLiteral(*s), value, called)); err != nil {
				return nil, fmt.Errorf("set identity sequence of %s: %w", tm.Dest, err)
			}
			set = append(set, fmt.Sprintf("%s = %d", *s, value))
			continue
		}
		if _, err := dst.Exec(ctx, ddl.SetSequenceValue(name, value, called)); err != nil {
			return nil, fmt.Errorf("set sequence %s: %w", name, err)
		}
		set = append(set, fmt.Sprintf("%s = %d", name, value))
	}
	return set, nil
}

// loadAllSequences reads the sequences of the selected tables (owned by their columns or used by
// their defaults) and the other sequences of whole schemas, each once.
func loadAllSequences(ctx context.Context, q catalog.Querier, s spec.Spec, defs []*catalog.Table) ([]catalog.Sequence, error) {
	seqs, err := catalog.LoadSequences(ctx, q, defs)
	if err != nil {
		return nil, err
	}
	more, err := catalog.LoadSchemaSequences(ctx, q, wholeSchemas(s))
	if err != nil {
		return nil, err
	}
	for _, sq := range more {
		if !slices.ContainsFunc(seqs, func(x catalog.Sequence) bool { return x.Name == sq.Name }) {
			seqs = append(seqs, sq)
		}
	}
	return seqs, nil
}

// ddlJob is one statement of a parallel schema step; attach, when set, runs after every job
// (an index attached to its parent's, see ddl.AttachIndex).
type ddlJob struct{ what, sql, attach string }

// runParallel runs jobs on the destination over full_load.parallelism connections (first is one
// of them).
func (a *Activities) runParallel(ctx context.Context, s spec.Spec, first *pgx.Conn, jobs []ddlJob) error {
	if len(jobs) == 0 {
		return nil
	}
	conns := make(chan *pgx.Conn, max(1, s.FullLoad.Parallelism))
	conns <- first
	var extra []*pgx.Conn
	defer func() { closeAll(ctx, extra...) }()
	// Extra connections only while the worker's connection budget has room (as in verify).
	for len(conns) < cap(conns) && len(extra)+1 < len(jobs) && a.Open.Budget.Spare() >= 1 {
		c, err := a.Open.ConnectDestination(ctx, s.Destination)
		if err != nil {
			return err
		}
		extra = append(extra, c)
		conns <- c
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(len(conns))
	for _, j := range jobs {
		g.Go(func() error {
			c := <-conns
			defer func() { conns <- c }()
			_, err := c.Exec(gctx, j.sql)
			for try := 1; catalogRace(err) && try <= 3; try++ {
				// Another job created the same name at that moment (an index on a partitioned
				// table makes its partitions' indexes): the catalog's unique index refused one
				// of the two. Run again, the statement finds it (IF NOT EXISTS).
				time.Sleep(time.Duration(try) * 100 * time.Millisecond)
				_, err = c.Exec(gctx, j.sql)
			}
			if err != nil {
				return fmt.Errorf("create %s: %w\n%s", j.what, err, j.sql)
			}
			return nil
		})
	}
	return g.Wait()
}

// catalogRace says whether err is a unique violation of a system catalog's index: two sessions
// created an object of the same name at once (pg_class_relname_nsp_index, pg_type_typname_nsp_index).
func catalogRace(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && strings.HasPrefix(pgErr.ConstraintName, "pg_")
}

// preStep creates one object of the pre-data section.
type preStep struct {
	ref  catalog.Ref
	what string
	run  func() error
	// skip, when set, says why the object is not created (reported, with what needs it);
	// unable says whether an error of run means the destination cannot hold the object (it
	// is then reported with what needs it, and the rest is created) and how to say so.
	skip   string
	unable func(err error) (string, bool)
	// deps is what the step needs created first (see orderSteps).
	deps []catalog.Ref
}

// libraryMissing says whether err is the destination's refusal to load a C function's
// library: not there (58P01), or built for another server version.
func libraryMissing(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "58P01" ||
		pgErr.Code == "XX000" && (strings.Contains(pgErr.Message, "incompatible library") || strings.Contains(pgErr.Message, "could not load library")))
}

// preDataSteps lists what the pre-data section creates after the schemas and extensions (types,
// functions, aggregates, operators, sequences, tables, views and materialized views, empty),
// each after what it depends on in the
// source's pg_depend, as pg_dump orders them. Shell types are created here, at once: a base
// type's support functions take and return it before it is complete.
func (a *Activities) preDataSteps(ctx context.Context, sd *sides, in SchemaInput, m ddl.SpecMapper, seqs []catalog.Sequence,
	ensureSchema func(string) error, run func(what, stmt string) error, rep *SchemaReport) ([]preStep, error) {
	dst, defs := sd.dst, sd.defs
	types, err := catalog.LoadUserTypes(ctx, sd.tx, defs, wholeSchemas(in.Spec))
	if err != nil {
		return nil, err
	}
	var steps []preStep
	base := map[catalog.Ref]bool{}
	for _, ut := range types {
		name := ddl.MapType(ut.Name, m)
		if ut.NeedsShell() {
			if err := ensureSchema(name.Schema); err != nil {
				return nil, err
			}
			if err := createObject(ctx, dst, rep, "shell type "+name.String(), "pg_catalog", ddl.ShellType(ut, m)); err != nil {
				return nil, err
			}
			if ut.Kind == "p" {
				continue
			}
			base[catalog.Ref{Catalog: catalog.CatalogType, OID: ut.OID}] = true
		}
		steps = append(steps, preStep{ref: catalog.Ref{Catalog: catalog.CatalogType, OID: ut.OID}, what: "type " + name.String(), run: func() error {
			if err := ensureSchema(name.Schema); err != nil {
				return err
			}
			var defined bool
			// (to_regtype refuses a shell type.)
			if err := dst.QueryRow(ctx, `SELECT COALESCE((SELECT t.typisdefined FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typname = $2), false)`,
				name.Schema, name.Name).Scan(&defined); err != nil {
				return fmt.Errorf("look up type %s: %w", name, err)
			}
			if defined {
				rep.Skipped = append(rep.Skipped, "type "+name.String()+" (exists)")
				return nil
			}
			return run("type "+name.String(), ddl.CreateType(ut, m))
		}})
	}
	objs, err := catalog.LoadObjects(ctx, sd.tx, catalog.ObjectSelection{Schemas: wholeSchemas(in.Spec), Tables: sourceNames(in.Tables)})
	if err != nil {
		return nil, err
	}
	views := map[uint32]bool{}
	for _, o := range objs {
		if o.Kind == catalog.KindView || o.Kind == catalog.KindMatView {
			views[o.OID] = true
		}
	}
	deferViewsReadingDeferred(objs)
	for _, o := range objs {
		what := objectName(o, m)
		var stmt string
		ref := catalog.Ref{Catalog: catalog.CatalogProc, OID: o.OID}
		switch o.Kind {
		case catalog.KindFunction:
			stmt = ddl.CreateFunction(o, m)
			if names := ddl.Mentions(o.Body, in.Spec.Objects, in.Tables); len(names) > 0 {
				rep.Warned = append(rep.Warned, fmt.Sprintf("%s: its body mentions %v, renamed on the destination; it is created as written: check it", what, names))
			}
		case catalog.KindAggregate:
			stmt = ddl.CreateAggregate(o, m)
		case catalog.KindOperator:
			stmt = ddl.CreateOperator(o, m)
			ref.Catalog = catalog.CatalogOperator
		case catalog.KindOpFamily, catalog.KindOpClass, catalog.KindTSDictionary, catalog.KindTSConfig:
			stmts := append([]string{ddl.CreateSchema(m.Schema(o.Name.Schema))}, ddl.Deparsed(o, m)...)
			steps = append(steps, preStep{ref: catalog.Ref{Catalog: catalog.CatalogOf(o.Kind), OID: o.OID}, what: what, run: func() error {
				return createObject(ctx, dst, rep, what, ddl.SearchPath(o.Name.Schema, m), stmts...)
			}})
			continue
		case catalog.KindView, catalog.KindMatView:
			steps = append(steps, viewStep(ctx, sd, o, views, in.Tables, m, rep))
			continue
		default:
			continue // triggers and rules: post-data
		}
		st := preStep{ref: ref, what: what, run: func() error {
			return createObject(ctx, dst, rep, what, ddl.SearchPath(o.Name.Schema, m), ddl.CreateSchema(m.Schema(o.Name.Schema)), stmt)
		}}
		if o.Library != "" {
			st.unable = func(err error) (string, bool) {
				return fmt.Sprintf("the destination cannot load its library %s (%v); install the library there and create it by hand", o.Library, err), libraryMissing(err)
			}
		}
		steps = append(steps, st)
	}
	// The sequences of the tables' columns and defaults, and the other sequences of whole
	// schemas, in their (mapped) schemas: those of schemas that are not selected keep their name.
	for _, sq := range seqs {
		if sq.Identity {
			continue // created with its identity column
		}
		name := ddl.MapSequence(sq.Name, m)
		steps = append(steps, preStep{ref: catalog.Ref{Catalog: catalog.CatalogClass, OID: sq.OID}, what: "sequence " + name.String(), run: func() error {
			if err := ensureSchema(name.Schema); err != nil {
				return err
			}
			return run("sequence "+name.String(), ddl.CreateSequence(sq, m))
		}})
	}
	// A CHECK that calls a selected function is added after its table (and the function, which
	// may take the table's row type): as pg_dump separates it to break that cycle.
	var funcs, tables []uint32
	for _, st := range steps {
		if st.ref.Catalog == catalog.CatalogProc {
			funcs = append(funcs, st.ref.OID)
		}
	}
	for _, t := range defs {
		tables = append(tables, t.OID)
	}
	separate, err := catalog.ChecksCalling(ctx, sd.tx, tables, funcs)
	if err != nil {
		return nil, err
	}
	for i, t := range defs {
		tm := in.Tables[i]
		for k, con := range t.Constraints {
			if !separate[con.OID] || con.NotValid {
				continue
			}
			t.Constraints[k].Separate = true
			what := fmt.Sprintf("constraint %s on %s", con.Name, tm.Dest)
			steps = append(steps, preStep{ref: catalog.Ref{Catalog: catalog.CatalogConstraint, OID: con.OID}, what: what, run: func() error {
				return createObject(ctx, dst, rep, what, "pg_catalog", ddl.AddCheck(con, tm, m))
			}})
		}
		steps = append(steps, preStep{ref: catalog.Ref{Catalog: catalog.CatalogClass, OID: t.OID}, what: "table " + tm.Dest.String(), run: func() error {
			if in.Spec.ConflictMode == spec.ConflictIgnore {
				var exists bool
				if err := dst.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, tm.Dest.Quoted()).Scan(&exists); err != nil {
					return err
				}
				if exists {
					rep.Skipped = append(rep.Skipped, "table "+tm.Dest.String()+" (exists; kept with its rows)")
					return nil
				}
			}
			stmts := ddl.TableStatements(t, tm, m)
			if err := run("table "+tm.Dest.String(), stmts[0]); err != nil {
				var pgErr *pgconn.PgError
				if len(t.Inherits) == 0 || !errors.As(err, &pgErr) || pgErr.Code != "42611" {
					return err
				}
				// The destination's version refuses the inheritance as the source has it (a
				// child's own generation expression, 16+): the table stands alone, said by name.
				alone := *t
				alone.Inherits = nil
				stmts = ddl.TableStatements(&alone, tm, m)
				if err := run("table "+tm.Dest.String(), stmts[0]); err != nil {
					return err
				}
				rep.Warned = append(rep.Warned, fmt.Sprintf("table %s: created without INHERITS %v: %v", tm.Dest, t.Inherits, pgErr.Message))
			}
			for _, stmt := range stmts[1:] {
				if attach, ok := ddl.AttachPartition(t, tm, m); ok && stmt == attach {
					var attached bool // by an earlier attempt of this step
					if err := dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = pg_catalog.to_regclass($1))`,
						tm.Dest.Quoted()).Scan(&attached); err != nil {
						return err
					}
					if attached {
						continue
					}
				}
				if _, err := dst.Exec(ctx, stmt); err != nil {
					var pgErr *pgconn.PgError
					if strings.Contains(stmt, " SET COMPRESSION ") && errors.As(err, &pgErr) && pgErr.Code == "0A000" {
						// A storage choice, not data: the column keeps the destination's default.
						rep.Warned = append(rep.Warned, fmt.Sprintf("table %s: %s: not carried: %v", tm.Dest, stmt, err))
						continue
					}
					return fmt.Errorf("create table %s: %w\n%s", tm.Dest, err, stmt)
				}
			}
			return nil
		}})
	}
	return orderSteps(ctx, sd.tx, steps, func(from, to catalog.Ref) bool {
		// A base type's own support functions take and return its shell.
		return from.Catalog == catalog.CatalogProc && base[to]
	}, a.logger(ctx))
}

// orderSteps sorts steps by the source's dependencies between their objects; weak says which
// dependencies a created shell already meets (they are honoured only when they close no cycle).
func orderSteps(ctx context.Context, q catalog.Querier, steps []preStep, weak func(from, to catalog.Ref) bool, log *zap.Logger) ([]preStep, error) {
	refs := make([]catalog.Ref, len(steps))
	byRef := make(map[catalog.Ref]preStep, len(steps))
	for i, st := range steps {
		refs[i] = st.ref
		byRef[st.ref] = st
	}
	deps, err := catalog.Dependencies(ctx, q, refs)
	if err != nil {
		return nil, err
	}
	for from, tos := range deps {
		deps[from] = slices.DeleteFunc(tos, func(to catalog.Ref) bool {
			return weak(from, to) && slices.Contains(deps[to], from)
		})
	}
	order, cut := catalog.Order(refs, deps, func(r catalog.Ref) bool { return r.Catalog == catalog.CatalogProc })
	for _, c := range cut {
		log.Info("dependency cycle broken: created before what it depends on", zap.Stringer("object", c[0]), zap.Stringer("depends_on", c[1]))
	}
	out := make([]preStep, len(order))
	for i, r := range order {
		out[i] = byRef[r]
		out[i].deps = deps[r]
	}
	return out, nil
}
