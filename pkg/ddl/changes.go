package ddl

import (
	"fmt"
	"maps"
	"regexp"
	"strings"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/spec"
)

// Schema changes while streaming: the destination statements that turn a table's recorded state
// into the state a schema-change event carries (ddlcapture). Skein writes them itself, with the
// task's mapping and quoting, instead of replaying the source's text (which cannot follow renamed
// names and may hold several statements).

// Unsupported is a schema change Skein cannot apply: the task stops with it.
type Unsupported struct {
	Table  spec.QName
	Reason string
}

func (u *Unsupported) Error() string {
	return fmt.Sprintf("schema change of %s not supported: %s", u.Table, u.Reason)
}

// Change is the result of diffing two states of a table.
type Change struct {
	Stmts []string
	// Mapping is the table's mapping after the change (a renamed source table or column keeps
	// its destination name; the mapping follows the source's new names).
	Mapping spec.TableMap
	// Warnings are parts of the change not applied, named for the report.
	Warnings []string
}

// TableChange returns the statements that bring the destination table of tm from before to
// after (both states of the same source table, by OID). Columns are matched by attnum: a rename
// keeps its attnum, a dropped and re-added column does not.
func TableChange(before, after *ddlcapture.Table, tm spec.TableMap, m Mapper) (Change, error) {
	ch := Change{Mapping: tm}
	ch.Mapping.Source = after.QName()
	if (before.Parent == nil) != (after.Parent == nil) || before.Kind != after.Kind || before.PartitionBy != after.PartitionBy {
		return ch, &Unsupported{Table: after.QName(), Reason: "attaching, detaching or re-partitioning a table"}
	}
	if before.Persistence != after.Persistence {
		return ch, &Unsupported{Table: after.QName(), Reason: "SET LOGGED / SET UNLOGGED"}
	}
	dest := tm.Dest.Quoted()
	alter := func(format string, args ...any) {
		ch.Stmts = append(ch.Stmts, "ALTER TABLE "+dest+" "+fmt.Sprintf(format, args...))
	}
	schemas := schemaRenames(m)
	// A partition's columns follow its parent's: the parent's change reaches it on the destination.
	partition := after.Parent != nil
	renames := map[string]string{}
	for k, v := range tm.Columns {
		renames[k] = v
	}
	types := maps.Clone(tm.Types) // a mapped type follows its column's renames
	// (Its mapping follows the renames all the same.)
	for _, old := range before.Columns {
		if after.Column(old.Num) == nil {
			if !partition {
				alter("DROP COLUMN %s", ident(tm.DestColumn(old.Name)))
			}
			delete(renames, old.Name)
			delete(types, old.Name)
		}
	}
	for _, col := range after.Columns {
		old := before.Column(col.Num)
		if old != nil && old.Name != col.Name {
			if to, mapped := types[old.Name]; mapped {
				delete(types, old.Name)
				types[col.Name] = to
			}
		}
		switch {
		case old == nil:
			if !partition {
				alter("ADD COLUMN %s", ColumnDef(col, col.Name, schemas))
			}
		case old.Name == col.Name:
		case renames[old.Name] != "":
			renames[col.Name] = renames[old.Name] // the destination keeps its mapped name
			delete(renames, old.Name)
		case !partition:
			alter("RENAME COLUMN %s TO %s", ident(old.Name), ident(col.Name))
		}
	}
	ch.Mapping.Columns = nil
	if len(renames) > 0 {
		ch.Mapping.Columns = renames
	}
	ch.Mapping.Types = nil
	if len(types) > 0 {
		ch.Mapping.Types = types
	}
	for _, col := range after.Columns {
		old := before.Column(col.Num)
		if old == nil {
			continue
		}
		name := ident(ch.Mapping.DestColumn(col.Name))
		// A column mapped to a type of its own (column_types) keeps it.
		if !partition && (old.Type != col.Type || old.Collation != col.Collation) && ch.Mapping.DestType(col.Name) == "" {
			typ := MapExpr(col.Type, nil, schemas)
			collate := ""
			if col.Collation != "" {
				collate = " COLLATE " + col.Collation
			}
			alter("ALTER COLUMN %s TYPE %s%s USING %s::%s", name, typ, collate, name, typ)
		}
		if old.Default != col.Default {
			if col.Default == "" {
				alter("ALTER COLUMN %s DROP DEFAULT", name)
			} else {
				alter("ALTER COLUMN %s SET DEFAULT %s", name, MapDefault(col.Default, schemas))
			}
		}
		if old.NotNull != col.NotNull && old.Identity == "" && col.Identity == "" {
			if col.NotNull {
				alter("ALTER COLUMN %s SET NOT NULL", name)
			} else {
				alter("ALTER COLUMN %s DROP NOT NULL", name)
			}
		}
		if old.Identity != col.Identity {
			switch {
			case old.Identity == "":
				alter("ALTER COLUMN %s ADD %s", name, identityClause(col.Identity))
			case col.Identity == "":
				alter("ALTER COLUMN %s DROP IDENTITY", name)
			default:
				alter("ALTER COLUMN %s SET %s", name, strings.TrimSuffix(identityClause(col.Identity), " AS IDENTITY"))
			}
		}
		if old.Generated != col.Generated {
			return ch, &Unsupported{Table: after.QName(), Reason: "changing the expression of generated column " + col.Name}
		}
	}
	ch.Stmts = append(ch.Stmts, constraintChanges(before.Constraints, after.Constraints, after.QName(), ch.Mapping, m, &ch.Warnings)...)
	return ch, nil
}

// CreateTableFrom creates a table the source created while streaming, from its state: columns,
// then its constraints (and a partition as PARTITION OF its parent's destination table).
func CreateTableFrom(t *ddlcapture.Table, tm spec.TableMap, m Mapper) (Change, error) {
	ch := Change{Mapping: tm}
	schemas := schemaRenames(m)
	partitionBy := ""
	if t.PartitionBy != "" {
		partitionBy = " PARTITION BY " + MapExpr(t.PartitionBy, tm.Columns, schemas)
	}
	if t.Parent != nil {
		parent, ok := m.Table(*t.Parent)
		if !ok {
			return ch, &Unsupported{Table: t.QName(), Reason: "a partition of a table that is not selected"}
		}
		ch.Stmts = append(ch.Stmts, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s %s%s", tm.Dest.Quoted(), parent.Dest.Quoted(), t.Bound, partitionBy))
	} else {
		cols := make([]string, len(t.Columns))
		for i, c := range t.Columns {
			cols[i] = ColumnDef(c, tm.DestColumn(c.Name), schemas)
		}
		kind := "TABLE"
		if t.Persistence == "u" {
			kind = "UNLOGGED TABLE"
		}
		ch.Stmts = append(ch.Stmts, fmt.Sprintf("CREATE %s IF NOT EXISTS %s (\n  %s\n)%s", kind, tm.Dest.Quoted(), strings.Join(cols, ",\n  "), partitionBy))
	}
	ch.Stmts = append(ch.Stmts, constraintChanges(nil, t.Constraints, t.QName(), tm, m, &ch.Warnings)...)
	return ch, nil
}

// ColumnDef is a column's definition in CREATE TABLE or ADD COLUMN, under the name dest.
func ColumnDef(c ddlcapture.Column, dest string, schemas map[string]string) string {
	var b strings.Builder
	b.WriteString(ident(dest) + " " + MapExpr(c.Type, nil, schemas))
	if c.Collation != "" {
		b.WriteString(" COLLATE " + c.Collation)
	}
	switch {
	case c.Generated != "":
		b.WriteString(" GENERATED ALWAYS AS (" + MapExpr(c.Generated, nil, schemas) + ") STORED")
	case c.Identity != "":
		b.WriteString(" " + identityClause(c.Identity))
	case c.Default != "":
		b.WriteString(" DEFAULT " + MapDefault(c.Default, schemas))
	}
	if c.NotNull && c.Identity == "" {
		b.WriteString(" NOT NULL")
	}
	return b.String()
}

// nextvalRE finds the sequence a default calls nextval on: its name is a string literal, which
// MapExpr leaves alone.
var nextvalRE = regexp.MustCompile(`nextval\('((?:[^']|'')+)'::regclass\)`)

// MapDefault maps a column default: its schema-qualified names, and the schema of the sequence
// in a nextval('schema.sequence'::regclass) call.
func MapDefault(def string, schemas map[string]string) string {
	def = MapExpr(def, nil, schemas)
	return nextvalRE.ReplaceAllStringFunc(def, func(call string) string {
		name := strings.ReplaceAll(nextvalRE.FindStringSubmatch(call)[1], "''", "'")
		schema, rest, ok := strings.Cut(name, ".")
		if !ok {
			return call
		}
		to, renamed := schemas[strings.Trim(schema, `"`)]
		if !renamed {
			return call
		}
		return "nextval(" + catalog.QuoteLiteral(ident(to)+"."+rest) + "::regclass)"
	})
}

func identityClause(kind string) string {
	if kind == "a" {
		return "GENERATED ALWAYS AS IDENTITY"
	}
	return "GENERATED BY DEFAULT AS IDENTITY"
}

// referencesRE finds the referenced table of a foreign key's definition.
var referencesRE = regexp.MustCompile(`REFERENCES ((?:"(?:[^"]|"")+"|[^\s"(.]+)(?:\.(?:"(?:[^"]|"")+"|[^\s"(.]+))?)\(`)

// constraintChanges drops the constraints of before that after lacks or changed and adds those
// after has new or changed, keys before foreign keys. A foreign key to a table outside the
// selection is left out and warned about.
func constraintChanges(before, after []ddlcapture.Constraint, src spec.QName, tm spec.TableMap, m Mapper, warned *[]string) []string {
	find := func(list []ddlcapture.Constraint, name string) *ddlcapture.Constraint {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
		return nil
	}
	var stmts []string
	dest := tm.Dest.Quoted()
	for _, old := range before {
		if now := find(after, old.Name); now == nil || now.Def != old.Def {
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", dest, ident(old.Name)))
		}
	}
	schemas := schemaRenames(m)
	for _, kind := range []string{"p", "u", "x", "c", "f"} {
		for _, con := range after {
			if con.Kind != kind {
				continue
			}
			if old := find(before, con.Name); old != nil && old.Def == con.Def {
				continue
			}
			def := MapExpr(con.Def, tm.Columns, schemas)
			if kind == "f" {
				if con.RefTable == nil {
					continue
				}
				ref, ok := m.Table(*con.RefTable)
				if !ok {
					*warned = append(*warned, fmt.Sprintf("foreign key %s on %s: references %s, which is not selected", con.Name, src, *con.RefTable))
					continue
				}
				def = referencesRE.ReplaceAllString(MapExpr(con.Def, tm.Columns, nil), "REFERENCES "+ref.Dest.Quoted()+"(")
			}
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", dest, ident(con.Name), def))
		}
	}
	return stmts
}

// indexRE splits pg_get_indexdef's text: UNIQUE, the name, ONLY, the table, the rest.
var indexRE = regexp.MustCompile(`^CREATE (UNIQUE )?INDEX ("(?:[^"]|"")+"|\S+) ON (ONLY )?(?:"(?:[^"]|"")+"|[^\s"]+)(?:\.(?:"(?:[^"]|"")+"|[^\s"]+))? USING (.*)$`)

// CreateIndexFrom is a source index (pg_get_indexdef's text) on the destination table of tm.
func CreateIndexFrom(def string, tm spec.TableMap, m Mapper) (string, error) {
	parts := indexRE.FindStringSubmatch(def)
	if parts == nil {
		return "", &Unsupported{Table: tm.Source, Reason: "an index definition Skein cannot read: " + def}
	}
	return fmt.Sprintf("CREATE %sINDEX IF NOT EXISTS %s ON %s%s USING %s", parts[1], parts[2], parts[3], tm.Dest.Quoted(),
		MapExpr(parts[4], tm.Columns, schemaRenames(m))), nil
}

// SequenceFrom creates or alters a sequence the source created or altered, under its mapped name.
func SequenceFrom(s ddlcapture.Sequence, m Mapper) []string {
	name := spec.QName{Schema: m.Schema(s.Schema), Name: s.Name}.Quoted()
	cycle := "NO CYCLE"
	if s.Cycle {
		cycle = "CYCLE"
	}
	params := fmt.Sprintf("INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d CACHE %d %s", s.Increment, s.Min, s.Max, s.Start, s.Cache, cycle)
	return []string{
		fmt.Sprintf("CREATE SEQUENCE IF NOT EXISTS %s AS pg_catalog.%s %s", name, ident(s.Type), params),
		fmt.Sprintf("ALTER SEQUENCE %s AS pg_catalog.%s %s", name, ident(s.Type), params),
	}
}

// FollowRename returns the statements that carry a source table's rename or move to another
// schema (before and after are its states) to its destination table, and the mapping after them
// (tm is its mapping after the change, whose destination is still the old one). A table follows
// its source's name when its destination name is its source's old name (no `to:`); it follows a
// move when the new schema is in the selection (selected), into that schema's destination name.
// notFollowed names what stays behind: a move out of the selection. (A table mapped to a name of
// its own keeps it, as its mapping says, without a note.)
func FollowRename(before, after *ddlcapture.Table, tm spec.TableMap, m Mapper, selected func(schema string) bool) (stmts []string, out spec.TableMap, notFollowed string) {
	out = tm
	if before.Schema != after.Schema {
		switch to := m.Schema(after.Schema); {
		case !selected(after.Schema):
			notFollowed = fmt.Sprintf("table %s moved to schema %s, which the task does not select: its destination stays %s",
				before.QName(), after.Schema, tm.Dest)
		case tm.Dest.Schema != m.Schema(before.Schema):
		case to != tm.Dest.Schema:
			stmts = append(stmts, "ALTER TABLE "+tm.Dest.Quoted()+" SET SCHEMA "+ident(to))
			out.Dest.Schema = to
		}
	}
	if before.Name != after.Name && tm.Dest.Name == before.Name {
		stmts = append(stmts, "ALTER TABLE "+out.Dest.Quoted()+" RENAME TO "+ident(after.Name))
		out.Dest.Name = after.Name
	}
	return stmts, out, notFollowed
}
