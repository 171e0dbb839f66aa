package ddl

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
)

// SearchPath is the search path to create an object deparsed relative to source schema src
// with: pg_catalog first (as on the source, where it is implicit), then the mapped schema. Names
// the source printed unqualified resolve to the same objects, renamed schemas included.
func SearchPath(src string, m Mapper) string {
	return "pg_catalog, " + ident(m.Schema(src))
}

// CreateExtension installs an extension in the mapped schema, if it is not installed.
func CreateExtension(o catalog.Object, m Mapper) string {
	return fmt.Sprintf("CREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA %s", ident(o.Name.Name), ident(m.Schema(o.Name.Schema)))
}

// CreateFunction recreates a function or procedure under its mapped name (pg_get_functiondef's
// CREATE OR REPLACE, so a retry replaces it).
func CreateFunction(o catalog.Object, m Mapper) string {
	mapped := pgx.Identifier{m.Schema(o.Name.Schema), o.Name.Name}.Sanitize()
	def := o.Def
	for _, kind := range []string{"FUNCTION ", "PROCEDURE "} {
		head := "CREATE OR REPLACE " + kind + o.QualName + "("
		if strings.HasPrefix(def, head) {
			return "CREATE OR REPLACE " + kind + mapped + "(" + def[len(head):]
		}
	}
	return def
}

// CreateAggregate recreates an aggregate from its parts.
func CreateAggregate(o catalog.Object, m Mapper) string {
	args := o.Args
	if args == "" {
		args = "*"
	}
	return fmt.Sprintf("CREATE AGGREGATE %s (%s) (\n  %s\n)", pgx.Identifier{m.Schema(o.Name.Schema), o.Name.Name}.Sanitize(), args, strings.Join(o.AggParts, ",\n  "))
}

// CreateOperator recreates an operator from its parts. Its name is not an identifier: it is
// written as is, after the quoted mapped schema.
func CreateOperator(o catalog.Object, m Mapper) string {
	parts := []string{"FUNCTION = " + o.OpFunc}
	if o.OpLeft != "" {
		parts = append(parts, "LEFTARG = "+o.OpLeft)
	}
	if o.OpRight != "" {
		parts = append(parts, "RIGHTARG = "+o.OpRight)
	}
	if o.OpCommutator != "" {
		parts = append(parts, "COMMUTATOR = OPERATOR("+mapOperator(o.OpCommutator, o.Name.Schema, m)+")")
	}
	if o.OpNegator != "" {
		parts = append(parts, "NEGATOR = OPERATOR("+mapOperator(o.OpNegator, o.Name.Schema, m)+")")
	}
	if o.OpRestrict != "" {
		parts = append(parts, "RESTRICT = "+o.OpRestrict)
	}
	if o.OpJoin != "" {
		parts = append(parts, "JOIN = "+o.OpJoin)
	}
	if o.OpHashes {
		parts = append(parts, "HASHES")
	}
	if o.OpMerges {
		parts = append(parts, "MERGES")
	}
	return fmt.Sprintf("CREATE OPERATOR %s.%s (\n  %s\n)", ident(m.Schema(o.Name.Schema)), o.Name.Name, strings.Join(parts, ",\n  "))
}

// mapOperator maps "schema.op" (schema as quote_ident prints it) when schema is the object's.
func mapOperator(qualified, schema string, m Mapper) string {
	for _, prefix := range []string{catalog.QuoteIdent(schema) + ".", schema + "."} {
		if strings.HasPrefix(qualified, prefix) {
			return ident(m.Schema(schema)) + "." + qualified[len(prefix):]
		}
	}
	return qualified
}

// CreateView recreates a view or materialized view (without data: REFRESH fills it).
func CreateView(o catalog.Object, m Mapper) string {
	name := pgx.Identifier{m.Schema(o.Name.Schema), o.Name.Name}.Sanitize()
	with := ""
	if len(o.Options) > 0 {
		with = " WITH (" + strings.Join(o.Options, ", ") + ")"
	}
	query := strings.TrimSuffix(strings.TrimSpace(o.Def), ";")
	if o.Kind == catalog.KindMatView {
		return fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s AS\n%s\nWITH NO DATA", name, with, query)
	}
	return fmt.Sprintf("CREATE OR REPLACE VIEW %s%s AS\n%s", name, with, query)
}

// PlaceholderView creates a view with o's columns and no rows (see catalog.Object.NeedsKey):
// CreateView replaces it.
func PlaceholderView(o catalog.Object, m Mapper) string {
	name := pgx.Identifier{m.Schema(o.Name.Schema), o.Name.Name}.Sanitize()
	return fmt.Sprintf("CREATE OR REPLACE VIEW %s AS %s", name, MapExpr(o.Placeholder, nil, schemaRenames(m)))
}

// RefreshView fills a materialized view.
func RefreshView(o catalog.Object, m Mapper) string {
	return "REFRESH MATERIALIZED VIEW " + pgx.Identifier{m.Schema(o.Name.Schema), o.Name.Name}.Sanitize()
}

// CreateTriggerOrRule is the trigger's or rule's own definition, created with SearchPath.
func CreateTriggerOrRule(o catalog.Object) string {
	return strings.TrimSuffix(strings.TrimSpace(o.Def), ";")
}

// EnableTriggerOrRule sets when a trigger or rule on table fires, unless it is the default.
func EnableTriggerOrRule(o catalog.Object, table spec.QName) (string, bool) {
	what := map[string]string{catalog.KindTrigger: "TRIGGER", catalog.KindRule: "RULE"}[o.Kind]
	how := map[string]string{"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}[o.Enabled]
	if o.CloneOf != "" && o.Enabled == "O" {
		how = "ENABLE"
	}
	if what == "" || how == "" || o.CloneOf == o.Enabled {
		return "", false
	}
	return fmt.Sprintf("ALTER TABLE %s %s %s %s", table.Quoted(), how, what, ident(o.Name.Name)), true
}

// CommentOn sets a comment on the mapped object.
func CommentOn(c catalog.Comment, m Mapper) string {
	var target string
	schema := m.Schema(c.Name.Schema)
	table := func() (spec.QName, func(string) string) {
		if tm, ok := m.Table(c.Table); ok {
			return tm.Dest, tm.DestColumn
		}
		return spec.QName{Schema: schema, Name: c.Table.Name}, func(s string) string { return s }
	}
	switch c.On {
	case "TABLE":
		if tm, ok := m.Table(c.Name); ok {
			target = tm.Dest.Quoted()
		} else {
			target = pgx.Identifier{schema, c.Name.Name}.Sanitize()
		}
	case "COLUMN":
		t, col := table()
		target = t.Quoted() + "." + ident(col(c.Column))
	case "CONSTRAINT", "TRIGGER", "RULE", "POLICY":
		t, _ := table()
		target = ident(c.Column) + " ON " + t.Quoted()
	case "DOMAIN CONSTRAINT":
		return fmt.Sprintf("COMMENT ON CONSTRAINT %s ON DOMAIN %s IS %s", ident(c.Column), pgx.Identifier{schema, c.Name.Name}.Sanitize(), catalog.QuoteLiteral(c.Text))
	case "FUNCTION", "PROCEDURE", "AGGREGATE":
		args := c.Args
		if c.On == "AGGREGATE" && args == "" {
			args = "*"
		}
		target = pgx.Identifier{schema, c.Name.Name}.Sanitize() + "(" + args + ")"
	case "OPERATOR":
		target = ident(schema) + "." + c.Name.Name + " (" + MapExpr(c.Args, nil, schemaRenames(m)) + ")"
	case "OPERATOR CLASS", "OPERATOR FAMILY":
		target = pgx.Identifier{schema, c.Name.Name}.Sanitize() + " USING " + ident(c.Args)
	case "SCHEMA":
		target = ident(schema)
	default: // VIEW, MATERIALIZED VIEW, SEQUENCE, INDEX, TYPE, DOMAIN, TEXT SEARCH ..., STATISTICS
		target = pgx.Identifier{schema, c.Name.Name}.Sanitize()
	}
	return fmt.Sprintf("COMMENT ON %s %s IS %s", c.On, target, catalog.QuoteLiteral(c.Text))
}

// Mentions reports the renamed names (schemas, tables, columns) that text mentions as words, for
// function bodies that are not rewritten: "shop." for a renamed schema, a renamed table or column
// name as a whole word.
func Mentions(text string, objs []spec.Object, tables []spec.TableMap) []string {
	var out []string
	lower := strings.ToLower(text)
	word := func(w string) bool {
		w = strings.ToLower(w)
		for i := 0; ; {
			k := strings.Index(lower[i:], w)
			if k < 0 {
				return false
			}
			k += i
			before := k == 0 || !isIdentPart(lower[k-1])
			after := k+len(w) >= len(lower) || !isIdentPart(lower[k+len(w)])
			if before && after {
				return true
			}
			i = k + 1
		}
	}
	for _, o := range objs {
		if o.To != "" && o.To != o.Schema && word(o.Schema) {
			out = append(out, "schema "+o.Schema)
		}
	}
	for _, t := range tables {
		if t.Dest.Name != t.Source.Name && word(t.Source.Name) {
			out = append(out, "table "+t.Source.String())
		}
		for from := range t.Columns {
			if word(from) {
				out = append(out, "column "+t.Source.String()+"."+from)
			}
		}
	}
	return out
}

// RowSecurity enables and forces row level security on the mapped table as the source has it.
func RowSecurity(t *catalog.Table, tm spec.TableMap) []string {
	var out []string
	if t.RowSecurity {
		out = append(out, "ALTER TABLE "+tm.Dest.Quoted()+" ENABLE ROW LEVEL SECURITY")
	}
	if t.ForceRowSecurity {
		out = append(out, "ALTER TABLE ONLY "+tm.Dest.Quoted()+" FORCE ROW LEVEL SECURITY")
	}
	return out
}

// CreatePolicy creates a row level security policy on the mapped table.
func CreatePolicy(p catalog.Policy, tm spec.TableMap, m Mapper) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE POLICY %s ON %s", ident(p.Name), tm.Dest.Quoted())
	if p.Restrictive {
		b.WriteString(" AS RESTRICTIVE")
	}
	b.WriteString(" FOR " + p.Command)
	if len(p.Roles) > 0 {
		roles := make([]string, len(p.Roles))
		for i, r := range p.Roles {
			roles[i] = ident(r)
		}
		b.WriteString(" TO " + strings.Join(roles, ", "))
	}
	if p.Using != "" {
		b.WriteString(" USING (" + MapExpr(p.Using, tm.Columns, schemaRenames(m)) + ")")
	}
	if p.Check != "" {
		b.WriteString(" WITH CHECK (" + MapExpr(p.Check, tm.Columns, schemaRenames(m)) + ")")
	}
	return b.String()
}

// Deparsed is an object the source deparsed whole (operator families and classes, text search
// dictionaries and configurations): its statements, with renamed schemas mapped.
func Deparsed(o catalog.Object, m Mapper) []string {
	out := []string{MapExpr(o.Def, nil, schemaRenames(m))}
	for _, s := range o.More {
		out = append(out, MapExpr(s, nil, schemaRenames(m)))
	}
	return out
}
