package precheck

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/dialect"
	"github.com/skein-dts/skein/pkg/spec"
)

// destCapabilities checks that the destination can hold the selection, before anything is
// created: every built-in column type exists there (and xml values can be stored: a server built
// without libxml has the type but refuses every value), every column collation exists for its
// database's encoding, the encodings are compatible, no two selected names become one under the
// destination's case rules, and no name is longer than the destination allows. Each problem
// names the table and column and says what to do. (Types and extensions of the selection that
// schema sync creates are dest_extensions' and the schema step's.)
func (c *checker) destCapabilities(ctx context.Context) {
	var problems []string
	fail := func(err error) {
		c.fail("dest_capabilities", Error, "checking the destination failed: "+err.Error(), "")
	}
	for _, check := range []func(context.Context) ([]string, error){c.missingTypes, c.mappedTypes, c.missingCollations, c.encodings, c.longNames} {
		found, err := check(ctx)
		if err != nil {
			fail(err)
			return
		}
		problems = append(problems, found...)
	}
	var notes []string
	if groups := caseCollisions(c.tables, c.defs); len(groups) > 0 {
		folds, err := dialect.FoldsCase(ctx, c.dst.PgConn())
		if err != nil {
			fail(err)
			return
		}
		if folds {
			for _, g := range groups {
				problems = append(problems, fmt.Sprintf("%s differ only in case and would be one name on the destination, which resolves names without regard to case: map one to another name (to:, columns:) or exclude it",
					strings.Join(g, " and ")))
			}
		} else {
			notes = append(notes, fmt.Sprintf("%d group(s) of names differ only in case; the destination keeps them apart", len(groups)))
		}
	}
	if len(problems) > 0 {
		c.fail("dest_capabilities", Error, "the destination cannot hold the selection as it is: "+strings.Join(problems, "; "),
			"exclude the tables named (exclude_tables), map them (to:, columns:) or their columns to a type the destination has (column_types), or give the destination what is missing (the extension, the collation, a server built with the feature)")
		return
	}
	detail := "the destination has every type and collation the selected columns use, a compatible encoding and room for every name"
	if len(notes) > 0 {
		detail += "; " + strings.Join(notes, "; ")
	}
	c.pass("dest_capabilities", Error, detail)
}

// columnsWhere lists "schema.table.column" of the selected columns for which keep is true, by
// the key keep returns (e.g. the type's name), in the order of the selection. Columns mapped to
// another type (column_types) are left out: mappedTypes checks those.
func (c *checker) columnsWhere(keep func(col catalog.Column) (string, bool)) (keys []string, uses map[string][]string) {
	uses = map[string][]string{}
	for i, t := range c.defs {
		for _, col := range t.Columns {
			if c.tables[i].DestType(col.Name) != "" {
				continue
			}
			k, ok := keep(col)
			if !ok {
				continue
			}
			if _, seen := uses[k]; !seen {
				keys = append(keys, k)
			}
			uses[k] = append(uses[k], c.tables[i].Source.String()+"."+col.Name)
		}
	}
	return keys, uses
}

// usedBy names the first few columns using something.
func usedBy(cols []string) string {
	if len(cols) > 3 {
		return strings.Join(cols[:3], ", ") + fmt.Sprintf(" and %d more", len(cols)-3)
	}
	return strings.Join(cols, ", ")
}

// destLibraries warns about the C functions of whole schemas the destination cannot create (see
// libraries): accepted (ignore_precheck: dest_libraries), schema sync reports them and what calls
// them by name, and creates the rest.
func (c *checker) destLibraries(ctx context.Context) {
	problems, err := c.libraries(ctx)
	switch {
	case err != nil:
		c.fail("dest_libraries", Warning, "checking the destination failed: "+err.Error(), "")
	case len(problems) > 0:
		c.fail("dest_libraries", Warning, strings.Join(problems, "; "),
			"install the libraries on the destination, or list dest_libraries in ignore_precheck: those functions and what calls them are then reported, not created")
	default:
		c.pass("dest_libraries", Warning, "the destination can load every C function's library (or the account may not create C functions, and cannot tell)")
	}
}

// libraries reports the C functions of whole schemas whose shared library the destination cannot
// load (not installed there, or built for another server version): schema sync cannot create
// them, nor what calls them. Each library is tried by creating a function from it in a
// transaction that is rolled back; an account that may not create C functions cannot tell, and
// nothing is reported then.
func (c *checker) libraries(ctx context.Context) ([]string, error) {
	rows, err := c.src.Query(ctx, `
SELECT p.probin, pg_catalog.min(p.prosrc),
       pg_catalog.string_agg(pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname) || '()', ', ' ORDER BY n.nspname, p.proname)
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE l.lanname = 'c' AND n.nspname = ANY($1) AND p.probin IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
GROUP BY p.probin ORDER BY p.probin`, c.s.WholeSchemas())
	if err != nil {
		return nil, err
	}
	type library struct{ path, symbol, funcs string }
	var libs []library
	var l library
	if _, err := pgx.ForEachRow(rows, []any{&l.path, &l.symbol, &l.funcs}, func() error { libs = append(libs, l); return nil }); err != nil {
		return nil, err
	}
	var out []string
	for _, l := range libs {
		err := probe(ctx, c.dst, `SET LOCAL check_function_bodies = on`,
			fmt.Sprintf(`CREATE FUNCTION pg_temp.skein_library_probe() RETURNS void AS %s, %s LANGUAGE c`,
				catalog.QuoteLiteral(l.path), catalog.QuoteLiteral(l.symbol)))
		var pgErr *pgconn.PgError
		switch {
		case err == nil, errors.As(err, &pgErr) && pgErr.Code == "42501":
			// Loaded (and rolled back), or the account may not create C functions: cannot tell.
		case errors.As(err, &pgErr) && (pgErr.Code == "58P01" || pgErr.Code == "42883" || pgErr.Code == "XX000"):
			out = append(out, fmt.Sprintf("C function(s) %s use library %s, which the destination cannot load (%s)",
				l.funcs, l.path, pgErr.Message))
		case err != nil:
			return nil, err
		}
	}
	return out, nil
}

// probe runs stmts on conn in a transaction that is rolled back, and returns the error of the
// first that fails (nil: the destination can do it).
func probe(ctx context.Context, conn *pgx.Conn, stmts ...string) error {
	return rolledBack(ctx, conn, func(tx pgx.Tx) error {
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, st); err != nil {
				return err
			}
		}
		return nil
	})
}

// missingTypes reports the built-in types of selected columns the destination lacks, and xml
// when it cannot store an xml value.
func (c *checker) missingTypes(ctx context.Context) ([]string, error) {
	types, uses := c.columnsWhere(func(col catalog.Column) (string, bool) {
		return pgx.Identifier{col.Type.Schema, col.Type.Name}.Sanitize(), col.Type.Builtin()
	})
	if len(types) == 0 {
		return nil, nil
	}
	missing, err := queryStrings(ctx, c.dst, `SELECT u.t FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY u(t, i)
WHERE pg_catalog.to_regtype(u.t) IS NULL ORDER BY u.i`, types)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range missing {
		out = append(out, fmt.Sprintf("type %s (used by %s) does not exist on the destination", t, usedBy(uses[t])))
	}
	xml := pgx.Identifier{"pg_catalog", "xml"}.Sanitize()
	if _, used := uses[xml]; used && !slices.Contains(missing, xml) {
		_, err := c.dst.Exec(ctx, `SELECT '<skein/>'::pg_catalog.xml`)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "0A000":
			out = append(out, fmt.Sprintf("xml values cannot be stored on the destination (%s: the server was built without libxml); used by %s",
				pgErr.Message, usedBy(uses[xml])))
		case err != nil:
			return nil, err
		}
	}
	return out, nil
}

// mappedTypes checks each column_types mapping: the column exists, the destination has the type,
// and the source can cast the column's values to it (a mapping that makes no sense there, such as
// a box to an integer, is refused; the load and the change stream then have the destination read
// each value's text form as the type).
func (c *checker) mappedTypes(ctx context.Context) ([]string, error) {
	var out []string
	for i, tm := range c.tables {
		for _, col := range slices.Sorted(maps.Keys(tm.Types)) {
			to := tm.Types[col]
			name := tm.Source.String() + "." + col
			if c.defs[i].Column(col) == nil {
				out = append(out, fmt.Sprintf("column_types names column %s, which does not exist", name))
				continue
			}
			var exists bool
			if err := c.dst.QueryRow(ctx, `SELECT pg_catalog.to_regtype($1) IS NOT NULL`, to).Scan(&exists); err != nil {
				return nil, err
			}
			if !exists {
				out = append(out, fmt.Sprintf("column_types maps %s to %s, which does not exist on the destination", name, to))
				continue
			}
			// The type name passed spec.checkTypeName: it is a type, not a statement.
			_, err := c.src.Exec(ctx, fmt.Sprintf("SELECT CAST(%s AS %s) FROM ONLY %s LIMIT 0", pgx.Identifier{col}.Sanitize(), to, tm.Source.Quoted()))
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr):
				out = append(out, fmt.Sprintf("column_types maps %s to %s, to which the source cannot cast it (%s)", name, to, pgErr.Message))
			case err != nil:
				return nil, err
			}
		}
	}
	return out, nil
}

// missingCollations reports column collations the destination lacks for its database's
// encoding (an ICU collation on a server built without ICU, a libc locale it does not have).
// Skein does not create collations (schema sync uses the destination's).
func (c *checker) missingCollations(ctx context.Context) ([]string, error) {
	colls, uses := c.columnsWhere(func(col catalog.Column) (string, bool) { return col.Collation, col.Collation != "" })
	if len(colls) == 0 {
		return nil, nil
	}
	missing, err := queryStrings(ctx, c.dst, `SELECT u.c FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY u(c, i)
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace n ON n.oid = co.collnamespace
  WHERE pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(co.collname) OPERATOR(pg_catalog.=) u.c
    AND co.collencoding IN (-1, (SELECT d.encoding FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())))
ORDER BY u.i`, colls)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, coll := range missing {
		out = append(out, fmt.Sprintf("collation %s (used by %s) does not exist on the destination for its encoding", coll, usedBy(uses[coll])))
	}
	return out, nil
}

// encodings reports a destination database whose encoding cannot hold every character of the
// source's (any source into UTF8 or SQL_ASCII is fine; otherwise they must be the same).
func (c *checker) encodings(ctx context.Context) ([]string, error) {
	const q = `SELECT pg_catalog.pg_encoding_to_char(d.encoding)::pg_catalog.text FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()`
	var src, dst string
	if err := c.src.QueryRow(ctx, q).Scan(&src); err != nil {
		return nil, err
	}
	if err := c.dst.QueryRow(ctx, q).Scan(&dst); err != nil {
		return nil, err
	}
	if src == dst || dst == "UTF8" || dst == "SQL_ASCII" {
		return nil, nil
	}
	return []string{fmt.Sprintf("the source database's encoding is %s and the destination's %s, which cannot hold every character of it: create the destination database with ENCODING 'UTF8' (or %s)", src, dst, src)}, nil
}

// longNames reports destination names (schemas, tables, columns, constraints) longer than the
// destination's max_identifier_length (NAMEDATALEN - 1 bytes): it would truncate them.
func (c *checker) longNames(ctx context.Context) ([]string, error) {
	var maxLen int
	var s string
	if err := c.dst.QueryRow(ctx, `SELECT pg_catalog.current_setting('max_identifier_length')`).Scan(&s); err != nil {
		return nil, err
	}
	if _, err := fmt.Sscan(s, &maxLen); err != nil || maxLen <= 0 {
		return nil, fmt.Errorf("max_identifier_length %q: not a number", s)
	}
	var long []string
	check := func(what, name string) {
		if len(name) > maxLen && !slices.Contains(long, what) {
			long = append(long, what)
		}
	}
	for i, t := range c.defs {
		tm := c.tables[i]
		check(fmt.Sprintf("schema %q", tm.Dest.Schema), tm.Dest.Schema)
		check(fmt.Sprintf("table %s", tm.Dest), tm.Dest.Name)
		for _, col := range t.Columns {
			to := tm.DestColumn(col.Name)
			check(fmt.Sprintf("column %s.%s", tm.Dest, to), to)
		}
		for _, k := range t.Constraints {
			check(fmt.Sprintf("constraint %s of %s", k.Name, tm.Dest), k.Name)
		}
	}
	if len(long) == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("names longer than the destination's %d bytes (it would cut them short): %s; map them to shorter names", maxLen, strings.Join(long, ", "))}, nil
}

// caseCollisions groups the selection's destination names that differ only in case: tables
// (by schema and name) and the columns of each table, after mapping.
func caseCollisions(tables []spec.TableMap, defs []*catalog.Table) [][]string {
	var groups [][]string
	collect := func(names []string) {
		by := map[string][]string{}
		for _, n := range names {
			k := strings.ToLower(n)
			if !slices.Contains(by[k], n) {
				by[k] = append(by[k], n)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(by)) {
			if len(by[k]) > 1 {
				groups = append(groups, by[k])
			}
		}
	}
	var names []string
	for _, t := range tables {
		names = append(names, "table "+t.Dest.Quoted())
	}
	collect(names)
	for i, t := range defs {
		if i >= len(tables) {
			break
		}
		var cols []string
		for _, col := range t.Columns {
			cols = append(cols, "column "+tables[i].Dest.Quoted()+"."+pgx.Identifier{tables[i].DestColumn(col.Name)}.Sanitize())
		}
		collect(cols)
	}
	return groups
}

// destFeatures warns about objects of the selection the destination's server cannot create
// because it lacks a feature (see xmlObjects, refusedInheritance): accepted (ignore_precheck:
// dest_features), schema sync reports each of them, and what needs it, by name, and creates the
// rest.
func (c *checker) destFeatures(ctx context.Context) {
	var problems []string
	for _, check := range []func(context.Context) ([]string, error){c.xmlObjects, c.refusedInheritance, c.compression, c.securityLabels} {
		found, err := check(ctx)
		if err != nil {
			c.fail("dest_features", Warning, "checking the destination failed: "+err.Error(), "")
			return
		}
		problems = append(problems, found...)
	}
	if len(problems) > 0 {
		c.fail("dest_features", Warning, strings.Join(problems, "; "),
			"use a destination server with the feature, or list dest_features in ignore_precheck: the objects named are then reported, not created (or created as said)")
		return
	}
	c.pass("dest_features", Warning, "the destination has every feature the selection's views, functions, inheritance and column compression use")
}

// xmlObjects names the views and functions of whole schemas that use xml when the destination
// cannot hold an xml value (a server built without libxml): creating them fails there. (Columns
// of type xml are dest_capabilities'.) A view or function is taken to use xml when a column,
// argument or result is xml or its text calls an xml function.
func (c *checker) xmlObjects(ctx context.Context) ([]string, error) {
	if len(c.s.WholeSchemas()) == 0 {
		return nil, nil
	}
	_, err := c.dst.Exec(ctx, `SELECT '<skein/>'::pg_catalog.xml`)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil, nil
	case !errors.As(err, &pgErr) || pgErr.Code != "0A000":
		return nil, err
	}
	names, err := queryStrings(ctx, c.src, `
SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY($1)
  AND (pg_catalog.pg_get_viewdef(c.oid) ~* '\mxml'
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.atttypid IN ('pg_catalog.xml'::pg_catalog.regtype, 'pg_catalog._xml'::pg_catalog.regtype)))
UNION ALL
SELECT 'function ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname) || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e')
  AND (p.prosrc ~* '\mxml' OR pg_catalog.pg_get_function_arguments(p.oid) ~* '\mxml' OR pg_catalog.pg_get_function_result(p.oid) ~* '\mxml')
ORDER BY 1`, c.s.WholeSchemas())
	if err != nil || len(names) == 0 {
		return nil, err
	}
	return []string{fmt.Sprintf("the destination cannot hold xml values (%s: the server was built without libxml), which %s use",
		pgErr.Message, strings.Join(names, ", "))}, nil
}

// compression names the columns of selected tables (and materialized views of whole schemas)
// compressed with a method the destination's server was built without (lz4): they are created
// with its default method, and schema sync says so.
func (c *checker) compression(ctx context.Context) ([]string, error) {
	methods, uses := c.columnsWhere(func(col catalog.Column) (string, bool) { return col.Compression, col.Compression != "" })
	if len(c.s.WholeSchemas()) > 0 {
		if v, err := serverVersion(ctx, c.src); err != nil || v < 140000 {
			return nil, err
		}
		views, err := queryStrings(ctx, c.src, `
SELECT pg_catalog.format('%I.%I.%I %s', n.nspname, c.relname, a.attname, CASE a.attcompression WHEN 'l' THEN 'lz4' ELSE 'pglz' END)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attcompression <> ''
WHERE c.relkind = 'm' AND n.nspname = ANY($1) ORDER BY 1`, c.s.WholeSchemas())
		if err != nil {
			return nil, err
		}
		for _, v := range views {
			col, method, _ := strings.Cut(v, " ")
			if _, seen := uses[method]; !seen {
				methods = append(methods, method)
			}
			uses[method] = append(uses[method], "materialized view "+col)
		}
	}
	var out []string
	for _, method := range methods {
		err := probe(ctx, c.dst, `CREATE TEMPORARY TABLE skein_probe_compression (a text COMPRESSION `+pgx.Identifier{method}.Sanitize()+`)`)
		var pgErr *pgconn.PgError
		switch {
		case err == nil, errors.As(err, &pgErr) && pgErr.Code == "42501":
		case errors.As(err, &pgErr) && (pgErr.Code == "0A000" || pgErr.Code == "22023" || pgErr.Code == "42601"):
			out = append(out, fmt.Sprintf("compression method %s is not available on the destination (%s), so these columns get its default method: %s",
				method, pgErr.Message, strings.Join(uses[method], ", ")))
		default:
			return nil, err
		}
	}
	return out, nil
}

// securityLabels names the security labels on objects of the selected schemas: schema sync does
// not carry them (they need the label provider's module loaded on both servers).
func (c *checker) securityLabels(ctx context.Context) ([]string, error) {
	var schemas []string
	for _, tm := range c.tables {
		if !slices.Contains(schemas, tm.Source.Schema) {
			schemas = append(schemas, tm.Source.Schema)
		}
	}
	schemas = append(schemas, c.s.WholeSchemas()...)
	labels, err := queryStrings(ctx, c.src, `
SELECT DISTINCT pg_catalog.format('%s %s (provider %s)', l.objtype, l.objname, l.provider)
FROM pg_catalog.pg_seclabels l JOIN pg_catalog.pg_namespace n ON n.oid = l.objnamespace
WHERE n.nspname = ANY($1) ORDER BY 1`, schemas)
	if err != nil || len(labels) == 0 {
		return nil, err
	}
	return []string{"security labels are not carried (set them on the destination, with its label provider loaded): " + strings.Join(labels, ", ")}, nil
}

// refusedInheritance names the selected tables that inherit a column as a generated column whose
// parent's column is not generated, when the destination refuses that (PostgreSQL 16 and newer:
// "child column specifies generation expression"): schema sync creates them without INHERITS.
func (c *checker) refusedInheritance(ctx context.Context) ([]string, error) {
	if v, err := serverVersion(ctx, c.src); err != nil || v < 120000 { // before 12: no generated columns
		return nil, err
	}
	var oids []uint32
	for _, t := range c.defs {
		if len(t.Inherits) > 0 {
			oids = append(oids, t.OID)
		}
	}
	if len(oids) == 0 {
		return nil, nil
	}
	pairs, err := queryStrings(ctx, c.src, `
SELECT DISTINCT pg_catalog.format('%I.%I (column %I, generated, inherits from %I.%I)', cn.nspname, c.relname, a.attname, pn.nspname, p.relname)
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_catalog.pg_class p ON p.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.inhrelid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
JOIN pg_catalog.pg_attribute pa ON pa.attrelid = i.inhparent AND pa.attname = a.attname AND NOT pa.attisdropped AND pa.attgenerated = ''
WHERE i.inhrelid = ANY($1) ORDER BY 1`, oids)
	if err != nil || len(pairs) == 0 {
		return nil, err
	}
	err = probe(ctx, c.dst, `CREATE TEMPORARY TABLE skein_probe_parent (a integer)`,
		`CREATE TEMPORARY TABLE skein_probe_child (a integer GENERATED ALWAYS AS (1) STORED) INHERITS (skein_probe_parent)`)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &pgErr) && pgErr.Code == "42611":
		return []string{fmt.Sprintf("the destination refuses a generated column inheriting from a column that is not (%s), so these tables are created without INHERITS (a query on the parent then leaves their rows out): %s",
			pgErr.Message, strings.Join(pairs, ", "))}, nil
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return nil, nil // the account may not create temporary tables: cannot tell
	default:
		return nil, err
	}
}

// serverVersion is conn's server_version_num.
func serverVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var v int
	err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4`).Scan(&v)
	return v, err
}
