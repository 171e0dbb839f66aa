// Package ddl generates the destination DDL for tables read by package catalog, with the task's
// name mapping applied. Every identifier is quoted and every built-in type is qualified with
// pg_catalog, so an Oracle-compatible destination cannot reinterpret it (DATE stays
// pg_catalog.date).
package ddl

import (
	"fmt"
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
		for _, c := range ut.Checks {
			b.WriteString(" CONSTRAINT " + ident(c.Name) + " " + MapExpr(c.Definition, nil, schemaRenames(m)))
		}
		return b.String()
	case "c":
		fields := make([]string, len(ut.Fields))
		for i, f := range ut.Fields {
			fields[i] = ident(f.Name) + " " + TypeSQL(f.Type, m)
		}
		return fmt.Sprintf("CREATE TYPE %s AS (%s)", name, strings.Join(fields, ", "))
	case "r":
		return fmt.Sprintf("CREATE TYPE %s AS RANGE (SUBTYPE = %s)", name, TypeSQL(ut.Subtype, m))
	}
	return ""
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
	return fmt.Sprintf("CREATE SEQUENCE IF NOT EXISTS %s AS pg_catalog.%s INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d CACHE %d %s",
		MapSequence(s.Name, m).Quoted(), ident(s.TypeName), s.Increment, s.Min, s.Max, s.Start, s.Cache, cycle)
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

// CreateTable creates the table with columns, types, defaults, NOT NULL, identity, generated
// columns and CHECK constraints: everything the full load needs, nothing that slows it down
// (keys, indexes and foreign keys come after the load, see PostData).
func CreateTable(t *catalog.Table, tm spec.TableMap, m Mapper) string {
	partitionBy := ""
	if t.PartitionKey != "" {
		partitionBy = " PARTITION BY " + MapExpr(t.PartitionKey, tm.Columns, schemaRenames(m))
	}
	if t.PartitionOf != nil {
		// A partition takes its columns and constraints from its parent (created first).
		if parent, ok := m.Table(*t.PartitionOf); ok {
			return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF %s %s%s", tm.Dest.Quoted(), parent.Dest.Quoted(), t.PartitionBound, partitionBy)
		}
	}
	var cols []string
	for _, c := range t.Columns {
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
		case c.Identity == "a":
			b.WriteString(" GENERATED ALWAYS AS IDENTITY")
		case c.Identity == "d":
			b.WriteString(" GENERATED BY DEFAULT AS IDENTITY")
		case c.OwnedSequence != nil && strings.Contains(c.Default, "nextval("):
			seq := MapSequence(*c.OwnedSequence, m)
			b.WriteString(" DEFAULT pg_catalog.nextval(" + catalog.QuoteLiteral(seq.Quoted()) + "::pg_catalog.regclass)")
		case c.Default != "":
			b.WriteString(" DEFAULT " + MapExpr(c.Default, nil, schemaRenames(m)))
		}
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
		cols = append(cols, b.String())
	}
	for _, con := range t.Constraints {
		if con.Kind == "c" {
			cols = append(cols, "CONSTRAINT "+ident(con.Name)+" "+MapExpr(con.Definition, tm.Columns, schemaRenames(m)))
		}
	}
	kind := "TABLE"
	if t.Unlogged {
		kind = "UNLOGGED TABLE"
	}
	return fmt.Sprintf("CREATE %s IF NOT EXISTS %s (\n  %s\n)%s", kind, tm.Dest.Quoted(), strings.Join(cols, ",\n  "), partitionBy)
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
	for _, kind := range []string{"p", "u", "x", "f"} {
		for _, con := range t.Constraints {
			if con.Kind != kind {
				continue
			}
			cols := identList(con.Columns, tm.DestColumn)
			var body string
			switch kind {
			case "p":
				body = "PRIMARY KEY (" + cols + ")"
			case "u":
				body = "UNIQUE (" + cols + ")"
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
		if k.Opclass != "" {
			b.WriteString(" " + MapExpr(k.Opclass, nil, schemas))
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
	sql := fmt.Sprintf("CREATE %sINDEX IF NOT EXISTS %s ON %s USING %s (%s)", unique, ident(ix.Name), tm.Dest.Quoted(), ident(ix.Method), strings.Join(keys, ", "))
	if len(ix.Include) > 0 {
		sql += " INCLUDE (" + identList(ix.Include, tm.DestColumn) + ")"
	}
	if ix.Predicate != "" {
		sql += " WHERE " + MapExpr(ix.Predicate, tm.Columns, schemas)
	}
	return sql
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
