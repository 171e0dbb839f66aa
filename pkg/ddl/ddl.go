// Package ddl generates the destination DDL for tables read by package catalog, with the task's
// name mapping applied. Every identifier is quoted and every built-in type is qualified with
// pg_catalog, so an Oracle-compatible destination cannot reinterpret it (DATE stays
// pg_catalog.date).
package ddl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
)

// Mapper maps source names to destination names.
type Mapper interface {
	// Schema maps a source schema name.
	Schema(src string) string
	// Table maps a source table; ok is false when the table is not selected.
	Table(src spec.QName) (m spec.TableMap, ok bool)
}

// SpecMapper maps with a spec's objects and resolved tables.
type SpecMapper struct {
	Objects []spec.Object
	Tables  []spec.TableMap
}

// Schema implements Mapper.
func (m SpecMapper) Schema(src string) string { return spec.DestSchema(m.Objects, src) }

// SchemaRenames maps each renamed source schema to its destination name.
func (m SpecMapper) SchemaRenames() map[string]string {
	out := map[string]string{}
	for _, o := range m.Objects {
		if o.To != "" && o.To != o.Schema {
			out[o.Schema] = o.To
		}
	}
	return out
}

// schemaRenames is m's SchemaRenames, if it has them.
func schemaRenames(m Mapper) map[string]string {
	if r, ok := m.(interface{ SchemaRenames() map[string]string }); ok {
		return r.SchemaRenames()
	}
	return nil
}

// Table implements Mapper.
func (m SpecMapper) Table(src spec.QName) (spec.TableMap, bool) {
	for _, t := range m.Tables {
		if t.Source == src {
			return t, true
		}
	}
	return spec.TableMap{}, false
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func identList(names []string, mapName func(string) string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = ident(mapName(n))
	}
	return strings.Join(parts, ", ")
}

// TypeSQL renders a column type for the destination.
func TypeSQL(t catalog.Type, m Mapper) string {
	var b strings.Builder
	switch {
	case t.Builtin() && t.Name == "interval" && !isPlainInterval(t):
		// Interval fields (YEAR TO MONTH, ...) exist only in the keyword syntax.
		return t.Formatted
	case t.Builtin():
		b.WriteString("pg_catalog.")
		b.WriteString(ident(t.Name))
	default:
		b.WriteString(pgx.Identifier{m.Schema(t.Schema), t.Name}.Sanitize())
	}
	b.WriteString(t.Modifier)
	if t.Array {
		b.WriteString("[]")
	}
	return b.String()
}

func isPlainInterval(t catalog.Type) bool {
	f := strings.TrimSuffix(t.Formatted, "[]")
	return f == "interval" || f == "interval"+t.Modifier
}

// CreateType creates a user type under its mapped name. CREATE TYPE has no IF NOT EXISTS: the
// caller skips types that exist (Exists).
func CreateType(ut catalog.UserType, m Mapper) string {
	name := MapType(ut.Name, m).Quoted()
	switch ut.Kind {
	case "e":
		labels := make([]string, len(ut.Labels))
		for i, l := range ut.Labels {
			labels[i] = catalog.QuoteLiteral(l)
		}
		return fmt.Sprintf("CREATE TYPE %s AS ENUM (%s)", name, strings.Join(labels, ", "))
	case "d":
		var b strings.Builder
		fmt.Fprintf(&b, "CREATE DOMAIN %s AS %s", name, TypeSQL(ut.Base, m))
		if ut.Collation != "" {
			b.WriteString(" COLLATE " + ut.Collation)
		}
		if ut.Default != "" {
			b.WriteString(" DEFAULT " + MapExpr(ut.Default, nil, schemaRenames(m)))
		}
		if ut.NotNull {
			b.WriteString(" NOT NULL")
		}
		var notValid []string
		for _, c := range ut.Checks {
			def := MapExpr(c.Definition, nil, schemaRenames(m))
			if strings.HasSuffix(def, " NOT VALID") {
				// CREATE DOMAIN takes no NOT VALID: added afterwards, as pg_dump does.
				notValid = append(notValid, fmt.Sprintf(";\nALTER DOMAIN %s ADD CONSTRAINT %s %s", name, ident(c.Name), def))
				continue
			}
			b.WriteString(" CONSTRAINT " + ident(c.Name) + " " + def)
		}
		return b.String() + strings.Join(notValid, "")
	case "c":
		fields := make([]string, len(ut.Fields))
		for i, f := range ut.Fields {
			fields[i] = ident(f.Name) + " " + TypeSQL(f.Type, m)
		}
		return fmt.Sprintf("CREATE TYPE %s AS (%s)", name, strings.Join(fields, ", "))
	case "r":
		parts := []string{"SUBTYPE = " + TypeSQL(ut.Subtype, m)}
		if ut.SubtypeOpclass != "" {
			parts = append(parts, "SUBTYPE_OPCLASS = "+MapExpr(ut.SubtypeOpclass, nil, schemaRenames(m)))
		}
		if ut.Collation != "" {
			parts = append(parts, "COLLATION = "+ut.Collation)
		}
		for _, f := range ut.Funcs {
			parts = append(parts, f.Option+" = "+mapFunction(f.Func, m))
		}
		return fmt.Sprintf("CREATE TYPE %s AS RANGE (%s)", name, strings.Join(parts, ", "))
	case "p":
		return ShellType(ut, m)
	case "b":
		var parts []string
		for _, f := range ut.Funcs {
			parts = append(parts, f.Option+" = "+mapFunction(f.Func, m))
		}
		if ut.Length < 0 {
			parts = append(parts, "INTERNALLENGTH = VARIABLE")
		} else {
			parts = append(parts, fmt.Sprintf("INTERNALLENGTH = %d", ut.Length))
		}
		if ut.ByValue {
			parts = append(parts, "PASSEDBYVALUE")
		}
		parts = append(parts, "ALIGNMENT = "+ut.Align, "STORAGE = "+ut.Storage)
		if ut.Category != "U" {
			parts = append(parts, "CATEGORY = "+catalog.QuoteLiteral(ut.Category))
		}
		if ut.Preferred {
			parts = append(parts, "PREFERRED = true")
		}
		if ut.DefaultRaw != nil {
			parts = append(parts, "DEFAULT = "+catalog.QuoteLiteral(*ut.DefaultRaw))
		}
		if ut.Element != nil {
			parts = append(parts, "ELEMENT = "+TypeSQL(*ut.Element, m))
		}
		if ut.Delimiter != "," {
			parts = append(parts, "DELIMITER = "+catalog.QuoteLiteral(ut.Delimiter))
		}
		if ut.Collatable {
			parts = append(parts, "COLLATABLE = true")
		}
		return fmt.Sprintf("CREATE TYPE %s (\n  %s\n)", name, strings.Join(parts, ",\n  "))
	}
	return ""
}

// ShellType creates the shell of a base type (or a shell type that stays one): its support
// functions take and return it before it is complete.
func ShellType(ut catalog.UserType, m Mapper) string {
	return "CREATE TYPE " + MapType(ut.Name, m).Quoted()
}

// mapFunction names a function in its mapped schema; built-in ones stay in pg_catalog.
func mapFunction(f spec.QName, m Mapper) string {
	if f.Schema == "pg_catalog" {
		return "pg_catalog." + ident(f.Name)
	}
	return spec.QName{Schema: m.Schema(f.Schema), Name: f.Name}.Quoted()
}

// MapType maps a user type's name: same name, mapped schema.
func MapType(name spec.QName, m Mapper) spec.QName {
	return spec.QName{Schema: m.Schema(name.Schema), Name: name.Name}
}

// CreateSchema creates a destination schema if it is missing.
func CreateSchema(name string) string {
	return "CREATE SCHEMA IF NOT EXISTS " + ident(name)
}

// CreateSequence creates a (non-identity) sequence on the destination, under its mapped name.
func CreateSequence(s catalog.Sequence, m Mapper) string {
	cycle := "NO CYCLE"
	if s.Cycle {
		cycle = "CYCLE"
	}
	kind := "SEQUENCE"
	if s.Unlogged {
		kind = "UNLOGGED SEQUENCE"
	}
	return fmt.Sprintf("CREATE %s IF NOT EXISTS %s AS pg_catalog.%s INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d CACHE %d %s",
		kind, MapSequence(s.Name, m).Quoted(), ident(s.TypeName), s.Increment, s.Min, s.Max, s.Start, s.Cache, cycle)
}

// MapSequence maps a sequence name: same name, mapped schema.
func MapSequence(name spec.QName, m Mapper) spec.QName {
	return spec.QName{Schema: m.Schema(name.Schema), Name: name.Name}
}

// SequenceOwnedBy ties a sequence to its column so it is dropped with it.
func SequenceOwnedBy(s catalog.Sequence, tm spec.TableMap, m Mapper) string {
	return fmt.Sprintf("ALTER SEQUENCE %s OWNED BY %s.%s", MapSequence(s.Name, m).Quoted(), tm.Dest.Quoted(), ident(tm.DestColumn(s.OwnedCol)))
}

// SetSequenceValue sets a destination sequence to the source's state. name is the destination
// name.
func SetSequenceValue(name spec.QName, lastValue int64, isCalled bool) string {
	return fmt.Sprintf("SELECT pg_catalog.setval(%s::pg_catalog.regclass, %d, %t)",
		catalog.QuoteLiteral(name.Quoted()), lastValue, isCalled)
}

// CreateTable creates the mapped table (IF NOT EXISTS), then what TableStatements adds: for a
// fresh destination, as one string of statements.
func CreateTable(t *catalog.Table, tm spec.TableMap, m Mapper) string {
	return strings.Join(TableStatements(t, tm, m), ";\n")
}

// TableStatements creates the mapped table as pg_dump does: CREATE TABLE IF NOT EXISTS first; a
// partition whose parent is selected is created with its own columns (their order, defaults and
// NOT NULLs may differ from the parent's) and attached by the second statement (see
// AttachPartition); a table that inherits from selected tables declares only its own columns
// and checks, INHERITS them, and sets the defaults and NOT NULLs of the inherited ones after.
// Column storage and compression come last. Every statement after the first can run again.
func TableStatements(t *catalog.Table, tm spec.TableMap, m Mapper) []string {
	schemas := schemaRenames(m)
	var parents []string
	for _, p := range t.Inherits {
		pm, ok := m.Table(p)
		if !ok {
			parents = nil // a parent is not selected: the table stands alone, with every column
			break
		}
		parents = append(parents, pm.Dest.Quoted())
	}
	inherits := len(parents) > 0
	// A typed table takes its columns from its type, unless they are renamed or retyped.
	typed := t.OfType != nil && len(tm.Columns) == 0 && len(tm.Types) == 0
	var cols, after []string
	for _, c := range t.Columns {
		col := ident(tm.DestColumn(c.Name))
		if typed {
			var opts string
			if c.Default != "" {
				opts += " DEFAULT " + MapExpr(c.Default, nil, schemas)
			}
			if c.NotNull {
				opts += " NOT NULL"
			}
			if opts != "" {
				cols = append(cols, col+" WITH OPTIONS"+opts)
			}
		} else if inherits && c.Inherited {
			if c.Default != "" && c.Generated == "" && c.Identity == "" {
				after = append(after, fmt.Sprintf("ALTER TABLE ONLY %s ALTER COLUMN %s SET DEFAULT %s", tm.Dest.Quoted(), col, MapExpr(c.Default, nil, schemas)))
			}
			if c.NotNull && !c.ParentNotNull {
				after = append(after, fmt.Sprintf("ALTER TABLE ONLY %s ALTER COLUMN %s SET NOT NULL", tm.Dest.Quoted(), col))
			}
		} else {
			if inherits && c.Merged {
				c.Generated = "" // the parent's
			}
			if inherits && c.ParentNotNull {
				c.NotNull = false // inherited
			}
			cols = append(cols, columnDef(c, tm, m))
		}
		if c.Storage != "" {
			after = append(after, fmt.Sprintf("ALTER TABLE ONLY %s ALTER COLUMN %s SET STORAGE %s", tm.Dest.Quoted(), col, strings.ToUpper(c.Storage)))
		}
		if c.Compression != "" {
			after = append(after, fmt.Sprintf("ALTER TABLE ONLY %s ALTER COLUMN %s SET COMPRESSION %s", tm.Dest.Quoted(), col, c.Compression))
		}
		if c.Statistics != nil {
			after = append(after, fmt.Sprintf("ALTER TABLE ONLY %s ALTER COLUMN %s SET STATISTICS %d", tm.Dest.Quoted(), col, *c.Statistics))
		}
		if len(c.Options) > 0 {
			after = append(after, fmt.Sprintf("ALTER TABLE ONLY %s ALTER COLUMN %s SET (%s)", tm.Dest.Quoted(), col, strings.Join(c.Options, ", ")))
		}
	}
	for _, con := range t.Constraints {
		if con.Kind == "c" && !con.NotValid && !con.Separate && (con.Local || !inherits) {
			cols = append(cols, "CONSTRAINT "+ident(con.Name)+" "+MapExpr(con.Definition, tm.Columns, schemas))
		}
	}
	kind := "TABLE"
	if t.Unlogged {
		kind = "UNLOGGED TABLE"
	}
	create := fmt.Sprintf("CREATE %s IF NOT EXISTS %s (\n  %s\n)", kind, tm.Dest.Quoted(), strings.Join(cols, ",\n  "))
	if typed {
		create = fmt.Sprintf("CREATE %s IF NOT EXISTS %s OF %s", kind, tm.Dest.Quoted(), MapType(*t.OfType, m).Quoted())
		if len(cols) > 0 {
			create += " (\n  " + strings.Join(cols, ",\n  ") + "\n)"
		}
	}
	if inherits {
		create += "\nINHERITS (" + strings.Join(parents, ", ") + ")"
	}
	if t.PartitionKey != "" {
		create += "\nPARTITION BY " + MapExpr(t.PartitionKey, tm.Columns, schemas)
	}
	if len(t.Options) > 0 {
		create += "\nWITH (" + strings.Join(t.Options, ", ") + ")"
	}
	out := []string{create}
	if attach, ok := AttachPartition(t, tm, m); ok {
		out = append(out, attach)
	}
	return append(out, after...)
}

// AttachPartition attaches a partition to its parent, when the parent is selected.
func AttachPartition(t *catalog.Table, tm spec.TableMap, m Mapper) (string, bool) {
	if t.PartitionOf == nil {
		return "", false
	}
	parent, ok := m.Table(*t.PartitionOf)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("ALTER TABLE ONLY %s ATTACH PARTITION %s %s", parent.Dest.Quoted(), tm.Dest.Quoted(), t.PartitionBound), true
}

// columnDef is a column's definition in CREATE TABLE.
func columnDef(c catalog.Column, tm spec.TableMap, m Mapper) string {
	var b strings.Builder
	b.WriteString(ident(tm.DestColumn(c.Name)))
	b.WriteString(" ")
	if to := tm.DestType(c.Name); to != "" {
		b.WriteString(to) // spec.checkTypeName: a type name, as the user wrote it
	} else {
		b.WriteString(TypeSQL(c.Type, m))
		if c.Collation != "" {
			b.WriteString(" COLLATE " + c.Collation)
		}
	}
	switch {
	case c.Generated != "":
		b.WriteString(" GENERATED ALWAYS AS (" + MapExpr(c.Generated, tm.Columns, schemaRenames(m)) + ") STORED")
	case c.Identity == "a", c.Identity == "d":
		b.WriteString(map[string]string{"a": " GENERATED ALWAYS AS IDENTITY", "d": " GENERATED BY DEFAULT AS IDENTITY"}[c.Identity])
		var opts []string
		if c.IdentitySequence != nil {
			opts = append(opts, "SEQUENCE NAME "+MapSequence(*c.IdentitySequence, m).Quoted())
		}
		if c.IdentityOptions != "" {
			opts = append(opts, c.IdentityOptions)
		}
		if len(opts) > 0 {
			b.WriteString(" (" + strings.Join(opts, " ") + ")")
		}
	case c.OwnedSequence != nil && strings.Contains(c.Default, "nextval("):
		seq := MapSequence(*c.OwnedSequence, m)
		b.WriteString(" DEFAULT pg_catalog.nextval(" + catalog.QuoteLiteral(seq.Quoted()) + "::pg_catalog.regclass)")
	case c.Default != "":
		b.WriteString(" DEFAULT " + MapExpr(c.Default, nil, schemaRenames(m)))
	}
	if c.NotNull {
		b.WriteString(" NOT NULL")
	}
	return b.String()
}

// fromParent says whether a constraint of t comes from a selected parent's: an inherited NOT
// VALID check (the parent's recurses), or a partition's copy of its parent's foreign key.
func fromParent(t *catalog.Table, con catalog.Constraint, m Mapper) bool {
	selected := func(q spec.QName) bool { _, ok := m.Table(q); return ok }
	switch {
	case con.Kind == "c" && !con.Local:
		return len(t.Inherits) > 0 && !slices.ContainsFunc(t.Inherits, func(q spec.QName) bool { return !selected(q) }) ||
			t.PartitionOf != nil && selected(*t.PartitionOf)
	case con.Kind == "f" && con.FromParent:
		return t.PartitionOf != nil && selected(*t.PartitionOf)
	}
	return false
}

// AddCheck adds a CHECK constraint to the mapped table.
func AddCheck(con catalog.Constraint, tm spec.TableMap, m Mapper) string {
	return fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", tm.Dest.Quoted(), ident(con.Name), MapExpr(con.Definition, tm.Columns, schemaRenames(m)))
}

// Constraint is a post-data statement that adds a named constraint; Table and Name let the caller
// skip it when it exists already (idempotent retries).
type Constraint struct {
	Kind  string     // "p", "u", "x" or "f": create all keys before any foreign key
	Table spec.QName // destination table
	Name  string
	SQL   string
}

// PostData returns the primary key, unique and foreign key constraints of t for the destination,
// in that order. Foreign keys to tables outside the selection are left out and returned in
// skipped, named for the report.
func PostData(t *catalog.Table, tm spec.TableMap, m Mapper) (stmts []Constraint, skipped []string) {
	for _, kind := range []string{"c", "p", "u", "x", "f"} {
		for _, con := range t.Constraints {
			if con.Kind != kind {
				continue
			}
			if fromParent(t, con, m) {
				continue // the parent's constraint makes it
			}
			if kind == "c" {
				// A NOT VALID check, after the rows it was never checked against (its
				// definition says NOT VALID).
				if con.NotValid {
					stmts = append(stmts, Constraint{Kind: kind, Table: tm.Dest, Name: con.Name, SQL: AddCheck(con, tm, m)})
				}
				continue
			}
			cols := identList(con.Columns, tm.DestColumn)
			var body string
			switch kind {
			case "p", "u":
				body = "PRIMARY KEY ("
				if kind == "u" {
					body = "UNIQUE ("
					if con.NullsNotDistinct {
						body = "UNIQUE NULLS NOT DISTINCT ("
					}
				}
				body += cols + ")"
				if len(con.Include) > 0 {
					body += " INCLUDE (" + identList(con.Include, tm.DestColumn) + ")"
				}
				if len(con.IndexOptions) > 0 {
					body += " WITH (" + strings.Join(con.IndexOptions, ", ") + ")"
				}
			case "x":
				// The definition carries DEFERRABLE itself.
				stmts = append(stmts, Constraint{Kind: kind, Table: tm.Dest, Name: con.Name,
					SQL: fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", tm.Dest.Quoted(), ident(con.Name), MapExpr(con.Definition, tm.Columns, schemaRenames(m)))})
				continue
			case "f":
				ref, ok := m.Table(con.RefTable)
				if !ok {
					skipped = append(skipped, fmt.Sprintf("foreign key %s on %s: references %s, which is not selected", con.Name, t.Name, con.RefTable))
					continue
				}
				body = fmt.Sprintf("FOREIGN KEY (%s) REFERENCES %s (%s)%s ON UPDATE %s ON DELETE %s",
					cols, ref.Dest.Quoted(), identList(con.RefColumns, ref.DestColumn), matchSQL(con.Match),
					actionSQL(con.OnUpdate), actionSQL(con.OnDelete))
			}
			if con.Deferrable {
				body += " DEFERRABLE"
				if con.Deferred {
					body += " INITIALLY DEFERRED"
				}
			}
			if con.NotValid {
				body += " NOT VALID"
			}
			stmts = append(stmts, Constraint{
				Kind:  kind,
				Table: tm.Dest,
				Name:  con.Name,
				SQL:   fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", tm.Dest.Quoted(), ident(con.Name), body),
			})
		}
	}
	return stmts, skipped
}

// CreateIndex creates a secondary index on the mapped table; renamed columns are renamed in its
// expressions and predicate too.
func CreateIndex(ix catalog.Index, tm spec.TableMap, m Mapper) string {
	schemas := schemaRenames(m)
	keys := make([]string, len(ix.Keys))
	for i, k := range ix.Keys {
		var b strings.Builder
		if k.Column != "" {
			b.WriteString(ident(tm.DestColumn(k.Column)))
		} else {
			b.WriteString("(" + MapExpr(k.Expression, tm.Columns, schemas) + ")")
		}
		if k.Collation != "" {
			b.WriteString(" COLLATE " + k.Collation)
		}
		if k.Opclass != "" {
			b.WriteString(" " + MapExpr(k.Opclass, nil, schemas))
			if len(k.OpclassOptions) > 0 {
				b.WriteString(" (" + strings.Join(k.OpclassOptions, ", ") + ")")
			}
		}
		switch {
		case k.Desc && !k.NullsFirst:
			b.WriteString(" DESC NULLS LAST")
		case k.Desc:
			b.WriteString(" DESC")
		case k.NullsFirst:
			b.WriteString(" NULLS FIRST")
		}
		keys[i] = b.String()
	}
	unique := ""
	if ix.Unique {
		unique = "UNIQUE "
	}
	only := ""
	if ix.Only {
		only = "ONLY "
	}
	sql := fmt.Sprintf("CREATE %sINDEX IF NOT EXISTS %s ON %s%s USING %s (%s)", unique, ident(ix.Name), only, tm.Dest.Quoted(), ident(ix.Method), strings.Join(keys, ", "))
	if len(ix.Include) > 0 {
		sql += " INCLUDE (" + identList(ix.Include, tm.DestColumn) + ")"
	}
	if ix.NullsNotDistinct {
		sql += " NULLS NOT DISTINCT"
	}
	if len(ix.Options) > 0 {
		sql += " WITH (" + strings.Join(ix.Options, ", ") + ")"
	}
	if ix.Predicate != "" {
		sql += " WHERE " + MapExpr(ix.Predicate, tm.Columns, schemas)
	}
	return sql
}

// AttachIndex attaches a partition's index to its parent's index (Index.AttachTo), when the
// parent's was created ON ONLY its table.
func AttachIndex(ix catalog.Index, tm spec.TableMap, m Mapper) (string, bool) {
	if ix.AttachTo == nil {
		return "", false
	}
	parent := spec.QName{Schema: m.Schema(ix.AttachTo.Schema), Name: ix.AttachTo.Name}
	return fmt.Sprintf("ALTER INDEX %s ATTACH PARTITION %s", parent.Quoted(), spec.QName{Schema: tm.Dest.Schema, Name: ix.Name}.Quoted()), true
}

func matchSQL(code string) string {
	switch code {
	case "f":
		return " MATCH FULL"
	case "p":
		return " MATCH PARTIAL"
	}
	return ""
}

func actionSQL(code string) string {
	switch code {
	case "r":
		return "RESTRICT"
	case "c":
		return "CASCADE"
	case "n":
		return "SET NULL"
	case "d":
		return "SET DEFAULT"
	}
	return "NO ACTION"
}
