package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/ddl"
	"github.com/skein-dts/skein/pkg/spec"
)

// wholeSchemas are the source schemas selected without a table list: all their objects sync.
func wholeSchemas(s spec.Spec) []string { return s.WholeSchemas() }

func sourceNames(tables []spec.TableMap) []spec.QName {
	out := make([]spec.QName, len(tables))
	for i, t := range tables {
		out[i] = t.Source
	}
	return out
}

// errExists reports an object that exists already (a retried step, or conflict_mode: ignore).
func errExists(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && slices.Contains([]string{"42710", "42723", "42P07", "42P06", "42P16"}, pgErr.Code)
}

// createIn runs stmts in one destination transaction with the search path the source deparsed
// them with (see ddl.SearchPath), function bodies unchecked (they may name objects created
// later, as pg_restore allows).
func createIn(ctx context.Context, dst *pgx.Conn, searchPath string, stmts ...string) error {
	tx, err := dst.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, `SELECT pg_catalog.set_config('search_path', $1, true), pg_catalog.set_config('check_function_bodies', 'off', true)`, searchPath); err != nil {
		return err
	}
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// functionMissing says whether err is the destination's "function does not exist" (42883): in
// post-data, a function the pre-data step reported as not created.
func functionMissing(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42883"
}

// featureMissing says whether err is the destination's "feature not supported" (0A000): a
// server built without a library (libxml, lz4) cannot hold what uses it.
func featureMissing(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "0A000"
}

// objectName names an object for the report.
func objectName(o catalog.Object, m ddl.Mapper) string {
	name := spec.QName{Schema: m.Schema(o.Name.Schema), Name: o.Name.Name}.String()
	switch o.Kind {
	case catalog.KindFunction, catalog.KindAggregate, catalog.KindOperator:
		return fmt.Sprintf("%s %s(%s)", o.Kind, name, o.Args)
	case catalog.KindTrigger, catalog.KindRule:
		if tm, ok := m.Table(o.Table); ok {
			return fmt.Sprintf("%s %s on %s", o.Kind, o.Name.Name, tm.Dest)
		}
	case catalog.KindExtension:
		return fmt.Sprintf("extension %s in schema %s", o.Name.Name, m.Schema(o.Name.Schema))
	}
	return o.Kind + " " + name
}

// createObject runs one object's statements and records the outcome in rep: created, or skipped when
// it exists already.
func createObject(ctx context.Context, dst *pgx.Conn, rep *SchemaReport, what, searchPath string, stmts ...string) error {
	err := createIn(ctx, dst, searchPath, stmts...)
	switch {
	case err == nil:
		rep.Created = append(rep.Created, what)
	case errExists(err):
		rep.Skipped = append(rep.Skipped, what+" (exists)")
	default:
		return fmt.Errorf("create %s: %w", what, err)
	}
	return nil
}

// createExtensions creates, before everything else, the extensions of whole schemas and those
// that own an object the selection uses.
func createExtensions(ctx context.Context, sd *sides, in SchemaInput, m ddl.SpecMapper, rep *SchemaReport) error {
	schemas := wholeSchemas(in.Spec)
	exts, err := catalog.SchemaExtensions(ctx, sd.tx, schemas)
	if err != nil {
		return err
	}
	typeExts, err := catalog.DependentExtensions(ctx, sd.tx, sd.defs, schemas)
	if err != nil {
		return err
	}
	for _, e := range typeExts {
		if !slices.ContainsFunc(exts, func(x catalog.Object) bool { return x.OID == e.OID }) {
			exts = append(exts, e)
		}
	}
	for _, e := range exts {
		if err := createObject(ctx, sd.dst, rep, objectName(e, m), "pg_catalog", ddl.CreateSchema(m.Schema(e.Name.Schema)), ddl.CreateExtension(e, m)); err != nil {
			return err
		}
	}
	return nil
}

// matViewIndexes creates the indexes of a materialized view once it is filled (a unique one is
// what REFRESH MATERIALIZED VIEW CONCURRENTLY needs).
func matViewIndexes(ctx context.Context, sd *sides, o catalog.Object, m ddl.SpecMapper, rep *SchemaReport) error {
	indexes, err := catalog.LoadIndexes(ctx, sd.tx, &catalog.Table{OID: o.OID, Name: o.Name})
	if err != nil {
		return err
	}
	tm := spec.TableMap{Source: o.Name, Dest: spec.QName{Schema: m.Schema(o.Name.Schema), Name: o.Name.Name}}
	for _, ix := range indexes {
		if err := createObject(ctx, sd.dst, rep, fmt.Sprintf("index %s on %s", ix.Name, tm.Dest), ddl.SearchPath(o.Name.Schema, m), ddl.CreateIndex(ix, tm, m)); err != nil {
			return err
		}
	}
	return nil
}

// viewStep creates a view, or a materialized view without its data (filled after the load, by
// postDataObjects), in the pre-data section's dependency order: a function or type may take its
// row type. One that reads a table or view that is not selected, or a table whose name or
// columns are renamed (its text is not rewritten), is reported instead, and so is one the
// destination cannot hold (a function it calls was not created, a feature it lacks).
func viewStep(ctx context.Context, sd *sides, o catalog.Object, selected map[uint32]bool, tables []spec.TableMap, m ddl.SpecMapper, rep *SchemaReport) preStep {
	what := objectName(o, m)
	st := preStep{ref: catalog.Ref{Catalog: catalog.CatalogClass, OID: o.OID}, what: what}
	for _, rel := range o.Relations {
		i := slices.IndexFunc(sd.defs, func(t *catalog.Table) bool { return t.OID == rel })
		switch {
		case i < 0:
			st.skip = "it reads a table that is not selected"
		case renamed(tables[i]):
			st.skip = fmt.Sprintf("it reads %s, which is renamed (the view text is not rewritten)", tables[i].Source)
		}
	}
	for _, d := range o.Depends {
		if !selected[d] {
			st.skip = "it reads a view that is not selected"
		}
	}
	st.unable = func(err error) (string, bool) {
		return fmt.Sprintf("%v (a function it calls was not created, or the destination lacks a feature it uses); create it by hand", err),
			functionMissing(err) || featureMissing(err)
	}
	st.run = func() error {
		create := ddl.CreateView(o, m)
		if o.NeedsKey {
			if o.Kind == catalog.KindMatView {
				return nil // created by postDataObjects, after the keys
			}
			create = ddl.PlaceholderView(o, m) // replaced by postDataObjects
		}
		if err := createObject(ctx, sd.dst, rep, what, ddl.SearchPath(o.Name.Schema, m), ddl.CreateSchema(m.Schema(o.Name.Schema)), create); err != nil {
			return err
		}
		return columnOptions(ctx, sd.dst, o, what, m, rep)
	}
	return st
}

// deferViewsReadingDeferred marks NeedsKey the views that read, directly or not, a materialized
// view that needs a key: that one is created after the keys, and so are they (a placeholder
// until then).
func deferViewsReadingDeferred(objs []catalog.Object) {
	deferred := map[uint32]bool{}
	for _, o := range objs {
		if o.Kind == catalog.KindMatView && o.NeedsKey {
			deferred[o.OID] = true
		}
	}
	for changed := len(deferred) > 0; changed; {
		changed = false
		for i, o := range objs {
			if deferred[o.OID] || !slices.ContainsFunc(o.Depends, func(d uint32) bool { return deferred[d] }) {
				continue
			}
			deferred[o.OID], objs[i].NeedsKey, changed = true, true, true
		}
	}
}

// columnOptions sets a materialized view's columns' storage and compression: a storage choice
// the destination may lack (lz4) is reported if so.
func columnOptions(ctx context.Context, dst *pgx.Conn, o catalog.Object, what string, m ddl.Mapper, rep *SchemaReport) error {
	for _, opt := range o.More {
		stmt := "ALTER TABLE ONLY " + spec.QName{Schema: m.Schema(o.Name.Schema), Name: o.Name.Name}.Quoted() + " " + opt
		if err := createIn(ctx, dst, "pg_catalog", stmt); err != nil {
			if !featureMissing(err) {
				return fmt.Errorf("%s: %w", what, err)
			}
			rep.Warned = append(rep.Warned, fmt.Sprintf("%s: %s: not carried: %v", what, opt, err))
		}
	}
	return nil
}

// relationExists says whether the destination has a table or view of that name.
func relationExists(ctx context.Context, dst *pgx.Conn, name spec.QName) (bool, error) {
	var exists bool
	if err := dst.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, name.Quoted()).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up %s: %w", name, err)
	}
	return exists, nil
}

// renamed says whether a table's name or columns differ on the destination: the text of what
// reads it (views, triggers, rules, statistics) is not rewritten.
func renamed(tm spec.TableMap) bool { return tm.Dest.Name != tm.Source.Name || len(tm.Columns) > 0 }

// viewsInOrder returns the views and materialized views of objs, each after those it reads, in
// whatever schema.
func viewsInOrder(ctx context.Context, q catalog.Querier, objs []catalog.Object) ([]catalog.Object, error) {
	byRef := map[catalog.Ref]catalog.Object{}
	var refs []catalog.Ref
	for _, o := range objs {
		if o.Kind == catalog.KindView || o.Kind == catalog.KindMatView {
			r := catalog.Ref{Catalog: catalog.CatalogClass, OID: o.OID}
			refs = append(refs, r)
			byRef[r] = o
		}
	}
	deps, err := catalog.Dependencies(ctx, q, refs)
	if err != nil {
		return nil, err
	}
	order, _ := catalog.Order(refs, deps, nil)
	out := make([]catalog.Object, len(order))
	for i, r := range order {
		out[i] = byRef[r]
	}
	return out, nil
}

// postDataObjects fills, after the data, the materialized views the pre-data section created
// (each after those it reads) and creates their indexes; it creates the triggers and rules of
// selected tables and of the views created, row level security, extended statistics and the
// comments.
func postDataObjects(ctx context.Context, sd *sides, in SchemaInput, m ddl.SpecMapper, rep *SchemaReport) error {
	schemas := wholeSchemas(in.Spec)
	objs, err := catalog.LoadObjects(ctx, sd.tx, catalog.ObjectSelection{Schemas: schemas, Tables: sourceNames(in.Tables)})
	if err != nil {
		return err
	}
	deferViewsReadingDeferred(objs)
	views, err := viewsInOrder(ctx, sd.tx, objs)
	if err != nil {
		return err
	}
	var created []spec.QName
	selected := map[uint32]bool{}
	for _, o := range views {
		selected[o.OID] = true
	}
	for _, o := range views {
		if o.NeedsKey {
			// Its query needs a key, which now exists: the placeholder is replaced (a
			// materialized view is created now), unless it is reported as not created.
			st := viewStep(ctx, sd, o, selected, in.Tables, m, rep)
			if exists, err := relationExists(ctx, sd.dst, spec.QName{Schema: m.Schema(o.Name.Schema), Name: o.Name.Name}); err != nil {
				return err
			} else if st.skip == "" && (exists || o.Kind == catalog.KindMatView) {
				if err := createIn(ctx, sd.dst, ddl.SearchPath(o.Name.Schema, m), ddl.CreateView(o, m)); err != nil {
					if why, ok := st.unable(err); ok {
						rep.Warned = append(rep.Warned, fmt.Sprintf("%s: not created: %s", st.what, why))
						continue
					}
					return fmt.Errorf("create %s: %w", st.what, err)
				}
				if o.Kind == catalog.KindMatView {
					rep.Created = append(rep.Created, st.what)
					if err := columnOptions(ctx, sd.dst, o, st.what, m, rep); err != nil {
						return err
					}
				}
			}
		}
		name := spec.QName{Schema: m.Schema(o.Name.Schema), Name: o.Name.Name}
		var exists, populated bool
		if err := sd.dst.QueryRow(ctx, `SELECT c.oid IS NOT NULL, COALESCE(c.relispopulated, false)
  FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass($1)`, name.Quoted()).Scan(&exists, &populated); err != nil {
			return fmt.Errorf("look up %s: %w", name, err)
		}
		if !exists {
			continue // reported by the pre-data section
		}
		created = append(created, o.Name)
		if o.Kind != catalog.KindMatView {
			continue
		}
		if !populated {
			if err := createIn(ctx, sd.dst, ddl.SearchPath(o.Name.Schema, m), ddl.RefreshView(o, m)); err != nil {
				return fmt.Errorf("fill %s: %w", objectName(o, m), err)
			}
		}
		if err := matViewIndexes(ctx, sd, o, m, rep); err != nil {
			return err
		}
	}
	// The rules and triggers of the views created, too (INSTEAD OF, DO INSTEAD).
	onViews, err := catalog.LoadObjects(ctx, sd.tx, catalog.ObjectSelection{Tables: created})
	if err != nil {
		return err
	}
	for _, o := range append(objs, onViews...) {
		if o.Kind != catalog.KindTrigger && o.Kind != catalog.KindRule {
			continue
		}
		what := objectName(o, m)
		table := spec.QName{Schema: m.Schema(o.Table.Schema), Name: o.Table.Name}
		if tm, ok := m.Table(o.Table); ok {
			if renamed(tm) {
				rep.Warned = append(rep.Warned, fmt.Sprintf("%s: not created: its table or columns are renamed (the definition is not rewritten); create it by hand", what))
				continue
			}
			table = tm.Dest
		}
		var stmts []string
		if o.CloneOf == "" {
			stmts = append(stmts, ddl.CreateTriggerOrRule(o))
		}
		if enable, ok := ddl.EnableTriggerOrRule(o, table); ok {
			stmts = append(stmts, enable)
		}
		if len(stmts) == 0 {
			continue
		}
		if err := createObject(ctx, sd.dst, rep, what, ddl.SearchPath(o.Table.Schema, m), stmts...); err != nil {
			if !functionMissing(err) {
				return err
			}
			rep.Warned = append(rep.Warned, fmt.Sprintf("%s: not created: %v (its function was not created: see the warnings before)", what, err))
		}
	}
	if err := rowSecurity(ctx, sd, in, m, rep); err != nil {
		return err
	}
	stats, err := catalog.LoadStatistics(ctx, sd.tx, sd.defs)
	if err != nil {
		return err
	}
	for _, st := range stats {
		tm, ok := m.Table(st.Table)
		if !ok {
			continue
		}
		what := fmt.Sprintf("statistics %s on %s", st.Name.Name, tm.Dest)
		if renamed(tm) {
			rep.Warned = append(rep.Warned, what+": not created: its table or columns are renamed (the definition is not rewritten); create it by hand")
			continue
		}
		stmts := []string{ddl.MapExpr(st.Def, nil, m.SchemaRenames())}
		if st.Target >= 0 {
			stmts = append(stmts, fmt.Sprintf("ALTER STATISTICS %s SET STATISTICS %d", spec.QName{Schema: m.Schema(st.Name.Schema), Name: st.Name.Name}.Quoted(), st.Target))
		}
		if err := createObject(ctx, sd.dst, rep, what, ddl.SearchPath(st.Table.Schema, m), stmts...); err != nil {
			return err
		}
	}
	comments, err := catalog.LoadComments(ctx, sd.tx, schemas, sourceNames(in.Tables))
	if err != nil {
		return err
	}
	for _, c := range comments {
		stmt := ddl.CommentOn(c, m)
		if err := createIn(ctx, sd.dst, "pg_catalog", stmt); err != nil {
			rep.Warned = append(rep.Warned, fmt.Sprintf("comment on %s %s: %v", c.On, c.Name, err))
			continue
		}
	}
	return nil
}

// rowSecurity enables (and forces) row level security on the selected tables that have it, and
// creates their policies. A policy for a role the destination does not have is reported, not
// created.
func rowSecurity(ctx context.Context, sd *sides, in SchemaInput, m ddl.SpecMapper, rep *SchemaReport) error {
	policies, err := catalog.LoadPolicies(ctx, sd.tx, sd.defs)
	if err != nil {
		return err
	}
	for i, t := range sd.defs {
		tm := in.Tables[i]
		for _, stmt := range ddl.RowSecurity(t, tm) {
			if _, err := sd.dst.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("row level security of %s: %w", tm.Dest, err)
			}
		}
	}
	for _, p := range policies {
		tm, ok := m.Table(p.Table)
		if !ok {
			continue
		}
		what := fmt.Sprintf("policy %s on %s", p.Name, tm.Dest)
		var missing []string
		if err := sd.dst.QueryRow(ctx, `SELECT COALESCE(pg_catalog.array_agg(r), '{}') FROM pg_catalog.unnest($1::pg_catalog.text[]) r
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r)`, p.Roles).Scan(&missing); err != nil {
			return fmt.Errorf("look up the roles of %s: %w", what, err)
		}
		if len(missing) > 0 {
			rep.Warned = append(rep.Warned, fmt.Sprintf("%s: not created: the destination has no role %s; create the roles, then the policy", what, strings.Join(missing, ", ")))
			continue
		}
		if err := createObject(ctx, sd.dst, rep, what, ddl.SearchPath(p.Table.Schema, m), ddl.CreatePolicy(p, tm, m)); err != nil {
			return err
		}
	}
	return nil
}
