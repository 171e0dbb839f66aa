package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/ddl"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
)

// Schema changes while streaming. A schema-change event (ddlcapture) is a barrier in the stream:
// everything before it is applied, then the destination DDL Skein derives from the difference
// between each table's recorded state and the event's runs in the destination transaction that
// also records the new state and, at its commit, the LSN; cached statements are dropped, and the
// stream goes on with the tables' new shape and mapping.

// recorded is a table's row in skein.relations: its mapping, and whether the stream created it.
type recorded struct {
	Table   spec.TableMap `json:"table"`
	Created bool          `json:"created,omitempty"`
	// Was lists the destination names the table had before it followed its source's renames: a
	// run that starts with a table list from before a rename (its report was lost with the run
	// that applied it) still finds the table by them.
	Was []spec.QName `json:"was,omitempty"`
}

// schemaModel is what change apply knows of the selected tables' schema.
type schemaModel struct {
	task    string
	objects []spec.Object
	states  map[uint32]*ddlcapture.Table // by source OID
	created map[uint32]bool              // tables the stream created (not in the task's list)
	was     map[uint32][]spec.QName      // destination names before renames (recorded.Was)
}

// RecordTable records a selected table's state and mapping for a task's change apply (at schema
// sync, inside the task's snapshot, or when the stream starts without one).
func RecordTable(ctx context.Context, db bookkeeping.Execer, task string, t *ddlcapture.Table, tm spec.TableMap) error {
	return saveState(ctx, db, task, t, recorded{Table: tm})
}

// RecordTables records the states and mappings of many selected tables (states[i] is tms[i]'s),
// a thousand per statement.
func RecordTables(ctx context.Context, db bookkeeping.Execer, task string, states []*ddlcapture.Table, tms []spec.TableMap) error {
	rels := make([]bookkeeping.Relation, len(states))
	for i, t := range states {
		var err error
		if rels[i], err = relationRow(t, recorded{Table: tms[i]}); err != nil {
			return err
		}
	}
	return bookkeeping.SaveRelations(ctx, db, task, rels)
}

func saveState(ctx context.Context, db bookkeeping.Execer, task string, t *ddlcapture.Table, r recorded) error {
	rel, err := relationRow(t, r)
	if err != nil {
		return err
	}
	return bookkeeping.SaveRelation(ctx, db, task, rel)
}

// relationRow is the bookkeeping row of a table's state and mapping.
func relationRow(t *ddlcapture.Table, r recorded) (bookkeeping.Relation, error) {
	mapping, err := json.Marshal(r)
	if err != nil {
		return bookkeeping.Relation{}, err
	}
	state, err := json.Marshal(t)
	if err != nil {
		return bookkeeping.Relation{}, err
	}
	return bookkeeping.Relation{RelID: t.OID, Mapping: mapping, State: state}, nil
}

// loadSchemaModel reads the task's recorded tables and lets their mappings replace the task's
// list where they changed (a renamed source table), and adds the tables the stream created.
func (a *applier) loadSchemaModel(ctx context.Context, task string, objects []spec.Object) error {
	rels, err := bookkeeping.Relations(ctx, a.dest, task)
	if err != nil {
		return err
	}
	a.schema = &schemaModel{task: task, objects: objects, states: map[uint32]*ddlcapture.Table{}, created: map[uint32]bool{},
		was: map[uint32][]spec.QName{}}
	byDest := map[spec.QName]spec.QName{}
	for src, tm := range a.tables {
		byDest[tm.Dest] = src
	}
	given := maps.Clone(byDest)
	defer func() {
		// The run was given a list from before some of its tables' renames (the report of the
		// run that applied them was lost with it): its first report carries the list as it is.
		now := map[spec.QName]spec.QName{}
		for src, tm := range a.tables {
			now[tm.Dest] = src
		}
		if !maps.Equal(given, now) {
			a.tablesVersion++
		}
	}()
	for _, r := range rels {
		var rec recorded
		var st ddlcapture.Table
		if err := json.Unmarshal(r.Mapping, &rec); err != nil {
			return fmt.Errorf("read the recorded schema of relation %d: %w", r.RelID, err)
		}
		if err := json.Unmarshal(r.State, &st); err != nil {
			return fmt.Errorf("read the recorded schema of relation %d: %w", r.RelID, err)
		}
		src, listed := byDest[rec.Table.Dest]
		for _, d := range rec.Was {
			if !listed {
				src, listed = byDest[d]
			}
		}
		if !listed && !rec.Created {
			continue // left the selection
		}
		if listed {
			delete(a.tables, src)
		}
		a.tables[rec.Table.Source] = rec.Table
		a.schema.states[r.RelID] = &st
		a.schema.created[r.RelID] = rec.Created
		a.schema.was[r.RelID] = rec.Was
	}
	return nil
}

// schemaMapper maps names with the task's current tables.
type schemaMapper struct{ a *applier }

func (m schemaMapper) Schema(src string) string { return spec.DestSchema(m.a.schema.objects, src) }
func (m schemaMapper) Table(src spec.QName) (spec.TableMap, bool) {
	tm, ok := m.a.tables[src]
	return tm, ok
}

// SchemaRenames maps each renamed source schema to its destination name.
func (m schemaMapper) SchemaRenames() map[string]string {
	return ddl.SpecMapper{Objects: m.a.schema.objects}.SchemaRenames()
}

// listsSchema reports whether the task's objects list names schema (whole or some tables): a
// table moved there stays in the selection, and its destination follows.
func (m *schemaModel) listsSchema(schema string) bool {
	return slices.ContainsFunc(m.objects, func(o spec.Object) bool { return o.Schema == schema })
}

// wholeSchema reports whether schema is selected whole, and the tables it excludes.
func (m *schemaModel) wholeSchema(schema string) (bool, []string) {
	for _, o := range m.objects {
		if o.Schema == schema && len(o.Tables) == 0 {
			return true, o.ExcludeTables
		}
	}
	return false, nil
}

// newTable returns the mapping of a table the source created, if it joins the selection: a
// partition of a selected table (its parent's renames, operations and filter), or a table of a
// schema selected whole.
func (a *applier) newTable(t *ddlcapture.Table) (spec.TableMap, bool) {
	dest := spec.QName{Schema: spec.DestSchema(a.schema.objects, t.Schema), Name: t.Name}
	if t.Parent != nil {
		parent, ok := a.tables[*t.Parent]
		if !ok {
			return spec.TableMap{}, false
		}
		return spec.TableMap{Source: t.QName(), Dest: dest, Columns: parent.Columns, Types: parent.Types, Operations: parent.Operations, Where: parent.Where}, true
	}
	whole, excluded := a.schema.wholeSchema(t.Schema)
	if !whole || slices.Contains(excluded, t.Name) {
		return spec.TableMap{}, false
	}
	return spec.TableMap{Source: t.QName(), Dest: dest, Operations: append([]string(nil), spec.AllOperations...)}, true
}

// tableOf returns the current mapping of a recorded table.
func (a *applier) tableOf(st *ddlcapture.Table) (spec.TableMap, bool) {
	tm, ok := a.tables[st.QName()]
	return tm, ok
}

// schemaChange applies one schema-change event.
func (a *applier) schemaChange(ctx context.Context, content []byte) error {
	if err := a.flush(ctx); err != nil {
		return err
	}
	ev, err := ddlcapture.ParseEvent(content)
	if err != nil {
		return errclass.Permanent(err)
	}
	if ev.CaptureError != "" {
		return errclass.Permanent(fmt.Errorf("a schema change on the source could not be captured (%s): %s; the source ran: %s", ev.Tag, ev.CaptureError, auditText(ev.Query)))
	}
	p := &schemaPlan{a: a, ev: &ev, m: schemaMapper{a}, tablesBefore: maps.Clone(a.tables)}
	p.sequences()
	for _, step := range []func() error{p.tables, p.indexes, func() error { return p.dropped(ctx) }} {
		if err := step(); err != nil {
			return p.fail(err)
		}
	}
	p.others()
	if len(p.stmts) == 0 && len(p.saves) == 0 && len(p.forgets) == 0 && p.skipped == 0 {
		return nil
	}
	return p.apply(ctx)
}

// schemaPlan is what one schema-change event does to the destination and to the task's table
// list and recorded schema: planned from the event (sequences, tables, indexes, dropped objects,
// other objects), then applied at once (apply).
type schemaPlan struct {
	a            *applier
	ev           *ddlcapture.Event
	m            schemaMapper
	tablesBefore map[spec.QName]spec.TableMap

	stmts, warned []string
	skipped       int // changes of tables whose DDL is not applied (operations without ddl)
	saves         []schemaSave
	forgets       []uint32      // dropped tables' OIDs
	renamed       []spec.Rename // destination tables renamed with the statements
}

// schemaSave is a table state to record with its mapping.
type schemaSave struct {
	state *ddlcapture.Table
	rec   recorded
}

// fail names the source's statement in an error of what cannot be replicated.
func (p *schemaPlan) fail(err error) error {
	var u *ddl.Unsupported
	if errors.As(err, &u) {
		return errclass.Permanent(fmt.Errorf("%w; the source ran: %s", err, auditText(p.ev.Query)))
	}
	return err
}

// sequences creates the new sequences of wholly selected schemas, first: a new table's defaults
// use them.
func (p *schemaPlan) sequences() {
	a := p.a
	for _, sq := range p.ev.Sequences {
		whole, _ := a.schema.wholeSchema(sq.Schema)
		if sq.OwnedBy && !whole {
			whole = slices.ContainsFunc(p.ev.Tables, func(t ddlcapture.Table) bool {
				_, ok := a.newTable(&t)
				return ok && t.Schema == sq.Schema
			})
		}
		if whole && !sq.Identity {
			p.stmts = append(p.stmts, ddl.SequenceFrom(sq, p.m)...)
		}
	}
}

// tables creates the selection's new tables and changes its changed ones (following renames).
func (p *schemaPlan) tables() error {
	a, ev, m := p.a, p.ev, p.m
	for i := range ev.Tables {
		after := &ev.Tables[i]
		before := a.schema.states[after.OID]
		if before == nil {
			tm, ok := a.newTable(after)
			if !ok {
				continue // not part of the selection
			}
			if !strings.HasPrefix(ev.Tag, "CREATE") {
				// ATTACH PARTITION: the table's rows from before are not in the change stream.
				return &ddl.Unsupported{Table: after.QName(), Reason: "a table attached as a partition of a selected table: its earlier rows are not in the change stream (create the partition with CREATE TABLE ... PARTITION OF, or release the task and start it again)"}
			}
			ch, err := ddl.CreateTableFrom(after, tm, m)
			if err != nil {
				return err
			}
			p.stmts = append(p.stmts, ch.Stmts...)
			p.warned = append(p.warned, ch.Warnings...)
			a.tables[tm.Source] = tm
			p.saves = append(p.saves, schemaSave{after, recorded{Table: tm, Created: true}})
			continue
		}
		tm, ok := a.tableOf(before)
		if !ok {
			continue
		}
		apply := tm.Allows(spec.OpDDL)
		diffWith := tm
		if !apply {
			// The table's DDL is not applied: its destination columns keep their names, and the
			// mapping follows the source's renames to them.
			diffWith.Columns = map[string]string{}
			for _, c := range before.Columns {
				diffWith.Columns[c.Name] = tm.DestColumn(c.Name)
			}
		}
		ch, err := ddl.TableChange(before, after, diffWith, m)
		if err != nil {
			return err
		}
		if apply {
			p.stmts = append(p.stmts, ch.Stmts...)
			p.warned = append(p.warned, ch.Warnings...)
			follow, mapping, notFollowed := ddl.FollowRename(before, after, ch.Mapping, m, a.schema.listsSchema)
			p.stmts = append(p.stmts, follow...)
			if mapping.Dest != ch.Mapping.Dest {
				a.schema.was[after.OID] = append(slices.Clone(a.schema.was[after.OID]), ch.Mapping.Dest)
				p.renamed = append(p.renamed, spec.Rename{From: ch.Mapping.Dest, To: mapping.Dest})
			}
			ch.Mapping = mapping
			if notFollowed != "" {
				a.log.Warn("schema change not replicated", zap.String("table", after.QName().String()), zap.String("tag", ev.Tag), zap.String("source_statement", auditText(ev.Query)))
				a.notReplicated = append(a.notReplicated, notFollowed)
			}
		} else if would, err := ddl.TableChange(before, after, tm, m); err == nil && len(would.Stmts) > 0 {
			p.skipped++ // what the table's DDL would have done on the destination
		}
		delete(a.tables, tm.Source)
		a.tables[ch.Mapping.Source] = ch.Mapping
		p.saves = append(p.saves, schemaSave{after, recorded{Table: ch.Mapping, Created: a.schema.created[after.OID], Was: a.schema.was[after.OID]}})
	}
	return nil
}

// indexes creates the new indexes of selected tables (a constraint's index comes with its
// ALTER TABLE).
func (p *schemaPlan) indexes() error {
	for _, ix := range p.ev.Indexes {
		tm, ok := p.a.tables[ix.Table]
		if !ok || ix.Constraint {
			continue
		}
		if !tm.Allows(spec.OpDDL) {
			p.skipped++
			continue
		}
		stmt, err := ddl.CreateIndexFrom(ix.Def, tm, p.m)
		if err != nil {
			return err
		}
		p.stmts = append(p.stmts, stmt)
	}
	return nil
}

// dropped drops what the source dropped: selected tables, indexes and sequences of selected
// schemas.
func (p *schemaPlan) dropped(ctx context.Context) error {
	a, m := p.a, p.m
	for _, d := range p.ev.Dropped {
		switch d.Type {
		case "table":
			st := a.schema.states[d.OID]
			if st == nil {
				continue
			}
			tm, ok := a.tableOf(st)
			if !ok {
				continue
			}
			p.forgets = append(p.forgets, d.OID)
			delete(a.tables, tm.Source)
			if !tm.Allows(spec.OpDDL) {
				p.skipped++
				continue
			}
			p.stmts = append(p.stmts, "DROP TABLE IF EXISTS "+tm.Dest.Quoted())
		case "index":
			if whole, _ := a.schema.wholeSchema(d.Schema); !whole && !a.selectsSchema(d.Schema) {
				continue
			}
			name := spec.QName{Schema: m.Schema(d.Schema), Name: d.Name}.Quoted()
			var constraint bool
			if err := a.dest.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conindid = pg_catalog.to_regclass($1))`, name).Scan(&constraint); err != nil {
				return err
			}
			if !constraint { // a constraint's index goes with the constraint (the ALTER TABLE's event)
				p.stmts = append(p.stmts, "DROP INDEX IF EXISTS "+name)
			}
		case "sequence":
			if whole, _ := a.schema.wholeSchema(d.Schema); whole {
				p.stmts = append(p.stmts, "DROP SEQUENCE IF EXISTS "+spec.QName{Schema: m.Schema(d.Schema), Name: d.Name}.Quoted())
			}
		}
	}
	return nil
}

// others reports the schema changes of other objects in selected schemas (views, functions,
// types): they are not replicated while streaming, and never skipped without a word.
func (p *schemaPlan) others() {
	a, ev := p.a, p.ev
	for _, o := range ev.Others {
		if whole, _ := a.schema.wholeSchema(o.Schema); whole || a.selectsSchema(o.Schema) {
			note := fmt.Sprintf("%s %s (%s) is not replicated while streaming", o.Type, o.Identity, ev.Tag)
			a.log.Warn("schema change not replicated", zap.String("object", o.Identity), zap.String("tag", ev.Tag), zap.String("source_statement", auditText(ev.Query)))
			a.notReplicated = append(a.notReplicated, note)
		}
	}
}

// apply runs the planned statements in the open destination transaction, drops the statements
// prepared for the old shapes, and records the new table states with them.
func (p *schemaPlan) apply(ctx context.Context) error {
	a, ev := p.a, p.ev
	for _, stmt := range p.stmts {
		if _, err := a.dest.Exec(ctx, stmt); err != nil {
			return errclass.DDL(fmt.Errorf("apply schema change (%s): %w; destination statement: %s; the source ran: %s", ev.Tag, withDetail(err), stmt, auditText(ev.Query)))
		}
	}
	// Statements prepared for the old shapes go; the next changes prepare them anew.
	var names []string
	for _, name := range a.stmts {
		names = append(names, name)
	}
	for _, st := range a.keyedStmts {
		if st.name != "" {
			names = append(names, st.name)
		}
	}
	for _, name := range names {
		if _, err := a.dest.Exec(ctx, "DEALLOCATE "+quote(name)); err != nil {
			return fmt.Errorf("apply schema change: %w", err)
		}
	}
	clear(a.stmts)
	clear(a.keyedStmts)
	clear(a.columns)
	clear(a.identity)
	for _, s := range p.saves {
		if err := saveState(ctx, a.dest, a.schema.task, s.state, s.rec); err != nil {
			return err
		}
		a.schema.states[s.state.OID] = s.state
		a.schema.created[s.state.OID] = s.rec.Created
	}
	for _, oid := range p.forgets {
		if err := bookkeeping.ForgetRelation(ctx, a.dest, a.schema.task, oid); err != nil {
			return err
		}
		delete(a.schema.states, oid)
	}
	a.renamed = append(a.renamed, p.renamed...)
	if !maps.EqualFunc(p.tablesBefore, a.tables, func(x, y spec.TableMap) bool { return reflect.DeepEqual(x, y) }) {
		a.tablesVersion++
	}
	if len(p.stmts) > 0 {
		a.counts.SchemaChanges++
	}
	if p.skipped > 0 {
		a.counts.SchemaChangesSkipped++
	}
	a.lastSchemaChange = ev.Tag + ": " + auditText(ev.Query)
	a.log.Info("schema change applied", zap.String("tag", ev.Tag), zap.Int("statements", len(p.stmts)), zap.Int("skipped", p.skipped),
		zap.Strings("warned", p.warned), zap.String("source_statement", auditText(ev.Query)))
	return nil
}

// tableList is the current table list, sorted by source name.
func (a *applier) tableList() []spec.TableMap {
	out := slices.Collect(maps.Values(a.tables))
	slices.SortFunc(out, func(x, y spec.TableMap) int { return strings.Compare(x.Source.String(), y.Source.String()) })
	return out
}

// selectsSchema reports whether a selected table lives in schema.
func (a *applier) selectsSchema(schema string) bool {
	for src := range a.tables {
		if src.Schema == schema {
			return true
		}
	}
	return false
}

// auditText shortens a source statement for status, logs and errors.
func auditText(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 300 {
		return q[:300] + "…"
	}
	return q
}

// RecordMissing records, for the selected tables that have no recorded state yet (a task
// without schema sync, or started before schema changes were captured), their current state on
// the source (src) as the base of the next events' differences.
func RecordMissing(ctx context.Context, src *pgx.Conn, dst *pgx.Conn, task string, tables []spec.TableMap) error {
	if err := bookkeeping.Ensure(ctx, dst); err != nil {
		return err
	}
	rels, err := bookkeeping.Relations(ctx, dst, task)
	if err != nil {
		return err
	}
	recordedDest := map[spec.QName]bool{}
	for _, r := range rels {
		var rec recorded
		if json.Unmarshal(r.Mapping, &rec) == nil {
			recordedDest[rec.Table.Dest] = true
			for _, d := range rec.Was {
				recordedDest[d] = true
			}
		}
	}
	var missing []spec.TableMap
	for _, tm := range tables {
		if !recordedDest[tm.Dest] {
			missing = append(missing, tm)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	tx, err := catalog.BeginRead(ctx, src, "")
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	for _, tm := range missing {
		var oid *uint32
		if err := tx.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1)::pg_catalog.oid`, tm.Source.Quoted()).Scan(&oid); err != nil {
			return fmt.Errorf("find %s: %w", tm.Source, err)
		}
		if oid == nil {
			continue // gone: its changes say so
		}
		st, err := ddlcapture.LoadTable(ctx, tx, *oid)
		if err != nil || st == nil {
			return err
		}
		if err := RecordTable(ctx, dst, task, st, tm); err != nil {
			return err
		}
	}
	return nil
}
