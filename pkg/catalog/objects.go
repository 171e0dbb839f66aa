package catalog

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/spec"
)

// Object kinds other than tables and types.
const (
	KindExtension = "extension"
	KindFunction  = "function" // functions and procedures
	KindAggregate = "aggregate"
	KindOperator  = "operator"
	KindView      = "view"
	KindMatView   = "materialized view"
	KindTrigger   = "trigger"
	KindRule      = "rule"
)

// Object is a schema object as the source deparses it. Definitions are printed with the search
// path set to the object's own schema (pg_catalog first, as always), so names in that schema are
// unqualified and land in the mapped schema when created there with the same search path.
type Object struct {
	Kind string
	OID  uint32
	Name spec.QName // schema and name (for triggers and rules: the table's schema and the name)
	// Table is the table of a trigger or rule.
	Table spec.QName
	// Args are a function's, aggregate's or operator's identity arguments, e.g. "integer, text".
	Args string
	// Def is the deparsed definition: CREATE statement, view query, or the parts of an aggregate
	// or operator (see the Agg* and Op* fields).
	Def string
	// Body is a function's source text, searched for renamed names.
	Body string
	// Library is a C-language function's shared library (probin), "" for others.
	Library string
	// QualName is the function's name as pg_get_functiondef prints it (schema.name, quoted as
	// needed).
	QualName string
	// Depends lists the views and materialized views (OIDs) a view reads from.
	Depends []uint32
	// Relations lists the tables (OIDs) a view reads from.
	Relations []uint32
	// AggParts are an aggregate's CREATE AGGREGATE options, as pg_dump writes them
	// ("SFUNC = f", "STYPE = t", "PARALLEL = SAFE", ...).
	AggParts []string
	// Operator parts.
	OpLeft, OpRight, OpFunc, OpCommutator, OpNegator, OpRestrict, OpJoin string
	OpHashes, OpMerges                                                   bool
	// Options are a view's reloptions (check_option, security_barrier, ...).
	Options []string
	// NeedsKey says that a view's query needs a table's constraint (a GROUP BY on a primary
	// key lets it select the table's other columns): created before the keys, it fails, so it
	// is created with Placeholder first and replaced after them, as pg_dump does.
	NeedsKey bool
	// Placeholder is a view's columns as a query of NULLs of their types and collations.
	Placeholder string
	// More are the statements that complete Def (an operator family's members, a text search
	// configuration's mappings), or a materialized view's column options ("ALTER COLUMN ...").
	More []string
	// Enabled is when a trigger or rule fires: "O" (origin and local, the default), "D"
	// disabled, "R" replica only, "A" always.
	Enabled string
	// CloneOf is, for a partition's copy of its parent's trigger, the parent trigger's Enabled
	// ("" for others): the copy comes with the parent's; only a different state is set.
	CloneOf string
}

// ObjectSelection says which objects to read: every object of whole schemas, and the triggers,
// rules and trigger functions of selected tables.
type ObjectSelection struct {
	Schemas []string     // whole schemas
	Tables  []spec.QName // selected tables (triggers, rules)
}

// SchemaExtensions lists the extensions installed in schemas (created on the destination with
// CREATE EXTENSION IF NOT EXISTS in the mapped schema).
func SchemaExtensions(ctx context.Context, q Querier, schemas []string) ([]Object, error) {
	rows, err := q.Query(ctx, `
SELECT e.oid, n.nspname, e.extname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE n.nspname = ANY($1) ORDER BY e.extname`, schemas)
	if err != nil {
		return nil, fmt.Errorf("list extensions: %w", err)
	}
	return scanExtensions(rows)
}

// scanExtensions reads rows of (oid, schema, name).
func scanExtensions(rows pgx.Rows) ([]Object, error) {
	defer rows.Close()
	var out []Object
	for rows.Next() {
		o := Object{Kind: KindExtension}
		if err := rows.Scan(&o.OID, &o.Name.Schema, &o.Name.Name); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// TypeExtensions lists the extensions that own a type (or the element type of an array type) the
// columns of tables use.
func TypeExtensions(ctx context.Context, q Querier, tables []*Table) ([]Object, error) {
	var oids []uint32
	for _, t := range tables {
		for _, col := range t.Columns {
			oids = append(oids, col.Type.OID)
		}
	}
	rows, err := q.Query(ctx, `
SELECT DISTINCT e.oid, n.nspname, e.extname FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
JOIN pg_catalog.pg_type t ON t.oid = d.objid
WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
  AND d.deptype = 'e' AND (t.oid = ANY($1) OR t.typarray = ANY($1))
ORDER BY 3`, oids)
	if err != nil {
		return nil, fmt.Errorf("list extensions of column types: %w", err)
	}
	return scanExtensions(rows)
}

// DependentExtensions lists the extensions, in whatever schema, that own an object the selection
// uses: the column types (TypeExtensions) and whatever the tables' indexes, defaults,
// constraints and triggers, and the views of whole schemas, refer to (operator classes,
// functions, operators: pg_trgm's gin_trgm_ops in public, used by an index of a selected table).
func DependentExtensions(ctx context.Context, q Querier, tables []*Table, schemas []string) ([]Object, error) {
	exts, err := TypeExtensions(ctx, q, tables)
	if err != nil {
		return nil, err
	}
	oids := make([]uint32, len(tables))
	for i, t := range tables {
		oids[i] = t.OID
	}
	rows, err := q.Query(ctx, `
WITH users (classid, objid) AS (
  SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid = ANY($1)
  UNION ALL SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, d.oid FROM pg_catalog.pg_attrdef d WHERE d.adrelid = ANY($1)
  UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_constraint c WHERE c.conrelid = ANY($1)
  UNION ALL SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass, t.oid FROM pg_catalog.pg_trigger t WHERE t.tgrelid = ANY($1) AND NOT t.tgisinternal
  UNION ALL SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, r.oid FROM pg_catalog.pg_rewrite r
    JOIN pg_catalog.pg_class v ON v.oid = r.ev_class JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
    WHERE v.relkind IN ('v', 'm') AND n.nspname = ANY($2)
)
SELECT DISTINCT e.oid, n.nspname, e.extname
FROM users u
JOIN pg_catalog.pg_depend d ON d.classid = u.classid AND d.objid = u.objid AND d.deptype = 'n'
JOIN pg_catalog.pg_depend x ON x.classid = d.refclassid AND x.objid = d.refobjid AND x.deptype = 'e'
  AND x.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
JOIN pg_catalog.pg_extension e ON e.oid = x.refobjid
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
ORDER BY 3`, oids, schemas)
	if err != nil {
		return nil, fmt.Errorf("list extensions the selection uses: %w", err)
	}
	more, err := scanExtensions(rows)
	if err != nil {
		return nil, fmt.Errorf("list extensions the selection uses: %w", err)
	}
	for _, e := range more {
		if !slices.ContainsFunc(exts, func(x Object) bool { return x.OID == e.OID }) {
			exts = append(exts, e)
		}
	}
	return exts, nil
}

// setSearchPath deparses the next reads relative to schema ("" = qualify everything).
func setSearchPath(ctx context.Context, q Querier, schema string) error {
	path := ""
	if schema != "" {
		path = QuoteIdent(schema)
	}
	_, err := q.Exec(ctx, `SELECT pg_catalog.set_config('search_path', $1, true)`, path)
	return err
}

// QuoteIdent quotes an identifier as SQL would: always.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// notExtensionMember keeps out objects that belong to an extension (CREATE EXTENSION makes them)
// or are part of another object (a range type's constructor functions come with the type).
// Format it with the object's OID column and its catalog: OIDs are unique within one catalog
// only.
const notExtensionMember = `NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.%[2]s'::pg_catalog.regclass
  AND d.objid = %[1]s AND d.deptype IN ('e', 'i'))`

// LoadObjects reads the selected objects other than tables and types. Use a transaction from
// BeginRead; the search path is left empty again afterwards.
func LoadObjects(ctx context.Context, q Querier, sel ObjectSelection) ([]Object, error) {
	var out []Object
	defer setSearchPath(context.WithoutCancel(ctx), q, "") //nolint:errcheck // best effort
	fnSeen := map[uint32]bool{}
	for _, schema := range sel.Schemas {
		if err := setSearchPath(ctx, q, schema); err != nil {
			return nil, err
		}
		fns, err := loadFunctions(ctx, q, `p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)`, schema)
		if err != nil {
			return nil, err
		}
		for _, f := range fns {
			fnSeen[f.OID] = true
		}
		out = append(out, fns...)
		for _, load := range []func(context.Context, Querier, string) ([]Object, error){loadOperators, loadDeparsed, loadViews} {
			objs, err := load(ctx, q, schema)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
	}
	tables, err := tablesWithObjects(ctx, q, sel.Tables)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := setSearchPath(ctx, q, t.Schema); err != nil {
			return nil, err
		}
		// The functions a selected table needs come along, wherever they live: its trigger
		// functions, and those its defaults, generated columns, constraints and indexes call.
		fns, err := loadFunctions(ctx, q, `n.nspname NOT IN `+excludedSchemas+` AND (
  p.oid IN (SELECT tgfoid FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass($1) AND NOT tgisinternal)
  OR p.oid IN (SELECT d.refobjid FROM pg_catalog.pg_depend d
               WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND (
                 (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_attrdef WHERE adrelid = pg_catalog.to_regclass($1)))
                 OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_constraint WHERE conrelid = pg_catalog.to_regclass($1)))
                 OR (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid IN (SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = pg_catalog.to_regclass($1))))))`, t.Quoted())
		if err != nil {
			return nil, err
		}
		for _, f := range fns {
			if !fnSeen[f.OID] {
				fnSeen[f.OID] = true
				out = append(out, f)
			}
		}
		objs, err := loadTriggersAndRules(ctx, q, t)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// tablesWithObjects returns, of tables, those with triggers or rules or whose defaults,
// constraints or indexes call functions (a table of none has nothing for LoadObjects to read).
func tablesWithObjects(ctx context.Context, q Querier, tables []spec.QName) ([]spec.QName, error) {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Quoted()
	}
	rows, err := q.Query(ctx, `
SELECT u.i::int8 FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY u(t, i)
CROSS JOIN LATERAL (SELECT pg_catalog.to_regclass(u.t) AS oid) r
WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = r.oid AND NOT tgisinternal)
   OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite WHERE ev_class = r.oid AND rulename <> '_RETURN')
   OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND (
        (d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_attrdef WHERE adrelid = r.oid))
        OR (d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid IN (SELECT oid FROM pg_catalog.pg_constraint WHERE conrelid = r.oid))
        OR (d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid IN (SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = r.oid))))
ORDER BY 1`, names)
	if err != nil {
		return nil, fmt.Errorf("find the tables' triggers, rules and functions: %w", err)
	}
	at, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("find the tables' triggers, rules and functions: %w", err)
	}
	out := make([]spec.QName, len(at))
	for k, i := range at {
		out[k] = tables[i-1]
	}
	return out, nil
}

func loadFunctions(ctx context.Context, q Querier, where string, arg any) ([]Object, error) {
	rows, err := q.Query(ctx, `
SELECT p.oid, n.nspname, p.proname, COALESCE(pg_catalog.to_jsonb(p) ->> 'prokind', CASE WHEN (pg_catalog.to_jsonb(p) ->> 'proisagg')::bool THEN 'a' WHEN (pg_catalog.to_jsonb(p) ->> 'proiswindow')::bool THEN 'w' ELSE 'f' END), pg_catalog.pg_get_function_identity_arguments(p.oid),
       pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname),
       CASE WHEN COALESCE(pg_catalog.to_jsonb(p) ->> 'prokind', CASE WHEN (pg_catalog.to_jsonb(p) ->> 'proisagg')::bool THEN 'a' WHEN (pg_catalog.to_jsonb(p) ->> 'proiswindow')::bool THEN 'w' ELSE 'f' END) IN ('f', 'p', 'w') THEN pg_catalog.pg_get_functiondef(p.oid) ELSE '' END,
       COALESCE(p.prosrc, ''),
       COALESCE((SELECT p.probin FROM pg_catalog.pg_language l WHERE l.oid = p.prolang AND l.lanname = 'c'), ''),
       CASE WHEN a.aggfnoid IS NULL THEN '{}'::pg_catalog.text[] ELSE pg_catalog.array_remove(ARRAY[
         'SFUNC = ' || a.aggtransfn::pg_catalog.regproc::pg_catalog.text,
         'STYPE = ' || pg_catalog.format_type(a.aggtranstype, NULL),
         CASE WHEN a.aggtransspace <> 0 THEN 'SSPACE = ' || a.aggtransspace END,
         CASE WHEN a.aggfinalfn <> 0 THEN 'FINALFUNC = ' || a.aggfinalfn::pg_catalog.regproc::pg_catalog.text END,
         CASE WHEN a.aggfinalextra THEN 'FINALFUNC_EXTRA' END,
         CASE WHEN a.aggfinalfn <> 0 THEN CASE COALESCE(pg_catalog.to_jsonb(a) ->> 'aggfinalmodify', '') -- 11+
           WHEN 's' THEN 'FINALFUNC_MODIFY = SHAREABLE'
           WHEN 'w' THEN CASE WHEN a.aggkind = 'n' THEN 'FINALFUNC_MODIFY = READ_WRITE' END
           WHEN 'r' THEN CASE WHEN a.aggkind <> 'n' THEN 'FINALFUNC_MODIFY = READ_ONLY' END END END,
         CASE WHEN a.aggcombinefn <> 0 THEN 'COMBINEFUNC = ' || a.aggcombinefn::pg_catalog.regproc::pg_catalog.text END,
         CASE WHEN a.aggserialfn <> 0 THEN 'SERIALFUNC = ' || a.aggserialfn::pg_catalog.regproc::pg_catalog.text END,
         CASE WHEN a.aggdeserialfn <> 0 THEN 'DESERIALFUNC = ' || a.aggdeserialfn::pg_catalog.regproc::pg_catalog.text END,
         CASE WHEN a.agginitval IS NOT NULL THEN 'INITCOND = ' || pg_catalog.quote_literal(a.agginitval) END,
         CASE WHEN a.aggmtransfn <> 0 THEN 'MSFUNC = ' || a.aggmtransfn::pg_catalog.regproc::pg_catalog.text END,
         CASE WHEN a.aggminvtransfn <> 0 THEN 'MINVFUNC = ' || a.aggminvtransfn::pg_catalog.regproc::pg_catalog.text END,
         CASE WHEN a.aggmtransfn <> 0 THEN 'MSTYPE = ' || pg_catalog.format_type(a.aggmtranstype, NULL) END,
         CASE WHEN a.aggmtransspace <> 0 THEN 'MSSPACE = ' || a.aggmtransspace END,
         CASE WHEN a.aggmfinalfn <> 0 THEN 'MFINALFUNC = ' || a.aggmfinalfn::pg_catalog.regproc::pg_catalog.text END,
         CASE WHEN a.aggmfinalextra THEN 'MFINALFUNC_EXTRA' END,
         CASE WHEN a.aggmfinalfn <> 0 THEN CASE COALESCE(pg_catalog.to_jsonb(a) ->> 'aggmfinalmodify', '')
           WHEN 's' THEN 'MFINALFUNC_MODIFY = SHAREABLE' WHEN 'w' THEN 'MFINALFUNC_MODIFY = READ_WRITE' END END,
         CASE WHEN a.aggminitval IS NOT NULL THEN 'MINITCOND = ' || pg_catalog.quote_literal(a.aggminitval) END,
         (SELECT 'SORTOP = OPERATOR(' || pg_catalog.quote_ident(on2.nspname) || '.' || o.oprname || ')' FROM pg_catalog.pg_operator o
          JOIN pg_catalog.pg_namespace on2 ON on2.oid = o.oprnamespace WHERE o.oid = a.aggsortop),
         CASE p.proparallel WHEN 's' THEN 'PARALLEL = SAFE' WHEN 'r' THEN 'PARALLEL = RESTRICTED' END,
         CASE WHEN a.aggkind = 'h' THEN 'HYPOTHETICAL' END], NULL) END
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid
WHERE `+where+` AND `+fmt.Sprintf(notExtensionMember, "p.oid", CatalogProc)+`
ORDER BY p.proname, p.oid`, arg)
	if err != nil {
		return nil, fmt.Errorf("list functions: %w", err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		var o Object
		var kind string
		if err := rows.Scan(&o.OID, &o.Name.Schema, &o.Name.Name, &kind, &o.Args, &o.QualName, &o.Def, &o.Body, &o.Library, &o.AggParts); err != nil {
			return nil, fmt.Errorf("list functions: %w", err)
		}
		o.Kind = KindFunction
		if kind == "a" {
			o.Kind = KindAggregate
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

func loadOperators(ctx context.Context, q Querier, schema string) ([]Object, error) {
	rows, err := q.Query(ctx, `
SELECT o.oid, n.nspname, o.oprname,
       COALESCE(pg_catalog.format_type(NULLIF(o.oprleft, 0), NULL), 'NONE') || ', ' || COALESCE(pg_catalog.format_type(NULLIF(o.oprright, 0), NULL), 'NONE'),
       COALESCE(pg_catalog.format_type(NULLIF(o.oprleft, 0), NULL), ''), COALESCE(pg_catalog.format_type(NULLIF(o.oprright, 0), NULL), ''),
       o.oprcode::pg_catalog.regproc::pg_catalog.text,
       COALESCE((SELECT pg_catalog.quote_ident(cn.nspname) || '.' || c.oprname FROM pg_catalog.pg_operator c JOIN pg_catalog.pg_namespace cn ON cn.oid = c.oprnamespace WHERE c.oid = o.oprcom), ''),
       COALESCE((SELECT pg_catalog.quote_ident(cn.nspname) || '.' || c.oprname FROM pg_catalog.pg_operator c JOIN pg_catalog.pg_namespace cn ON cn.oid = c.oprnamespace WHERE c.oid = o.oprnegate), ''),
       COALESCE(NULLIF(o.oprrest, 0)::pg_catalog.regproc::pg_catalog.text, ''), COALESCE(NULLIF(o.oprjoin, 0)::pg_catalog.regproc::pg_catalog.text, ''),
       o.oprcanhash, o.oprcanmerge
FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
WHERE n.nspname = $1 AND `+fmt.Sprintf(notExtensionMember, "o.oid", CatalogOperator)+`
  AND o.oprcode <> 0 -- a shell operator: created by the operator that names it its commutator or negator, as pg_dump leaves it
ORDER BY o.oprname, o.oid`, schema)
	if err != nil {
		return nil, fmt.Errorf("list operators of %s: %w", schema, err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		o := Object{Kind: KindOperator}
		if err := rows.Scan(&o.OID, &o.Name.Schema, &o.Name.Name, &o.Args, &o.OpLeft, &o.OpRight, &o.OpFunc,
			&o.OpCommutator, &o.OpNegator, &o.OpRestrict, &o.OpJoin, &o.OpHashes, &o.OpMerges); err != nil {
			return nil, fmt.Errorf("list operators of %s: %w", schema, err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// loadViews reads the views and materialized views of a schema, each after the views it reads
// from.
func loadViews(ctx context.Context, q Querier, schema string) ([]Object, error) {
	rows, err := q.Query(ctx, `
SELECT c.oid, n.nspname, c.relname, c.relkind::text, pg_catalog.pg_get_viewdef(c.oid), COALESCE(c.reloptions, '{}'),
       ARRAY(SELECT DISTINCT d.refobjid FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d
             ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
             JOIN pg_catalog.pg_class rc ON rc.oid = d.refobjid AND rc.relkind IN ('v', 'm')
             WHERE r.ev_class = c.oid AND d.refobjid <> c.oid),
       ARRAY(SELECT DISTINCT d.refobjid FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d
             ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
             JOIN pg_catalog.pg_class rc ON rc.oid = d.refobjid AND rc.relkind IN ('r', 'p', 'f')
             WHERE r.ev_class = c.oid),
       ARRAY(SELECT o FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid,
               LATERAL (VALUES
                 (CASE WHEN a.attstorage <> ty.typstorage THEN pg_catalog.format('ALTER COLUMN %I SET STORAGE %s', a.attname,
                    CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'x' THEN 'EXTENDED' ELSE 'MAIN' END) END),
                 (CASE COALESCE(pg_catalog.to_jsonb(a) ->> 'attcompression', '') -- 14+
                    WHEN 'p' THEN pg_catalog.format('ALTER COLUMN %I SET COMPRESSION pglz', a.attname)
                    WHEN 'l' THEN pg_catalog.format('ALTER COLUMN %I SET COMPRESSION lz4', a.attname) END)) v(o)
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND v.o IS NOT NULL ORDER BY a.attnum),
       EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d
               ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid
               AND d.refclassid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
               WHERE r.ev_class = c.oid),
       'SELECT ' || COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('NULL::%s%s AS %I', pg_catalog.format_type(a.atttypid, a.atttypmod),
                    CASE WHEN a.attcollation <> ty.typcollation THEN ' COLLATE ' || pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) ELSE '' END,
                    a.attname), ', ' ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
                  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
                  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('v', 'm') AND `+fmt.Sprintf(notExtensionMember, "c.oid", CatalogClass)+`
ORDER BY c.relname`, schema)
	if err != nil {
		return nil, fmt.Errorf("list views of %s: %w", schema, err)
	}
	defer rows.Close()
	var views []Object
	for rows.Next() {
		var o Object
		var kind string
		if err := rows.Scan(&o.OID, &o.Name.Schema, &o.Name.Name, &kind, &o.Def, &o.Options, &o.Depends, &o.Relations, &o.More, &o.NeedsKey, &o.Placeholder); err != nil {
			return nil, fmt.Errorf("list views of %s: %w", schema, err)
		}
		o.Kind = KindView
		if kind == "m" {
			o.Kind = KindMatView
		}
		views = append(views, o)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return sortViews(views), nil
}

// sortViews orders views so that each comes after the views (of the same list) it reads from.
func sortViews(views []Object) []Object {
	byOID := map[uint32]int{}
	for i, v := range views {
		byOID[v.OID] = i
	}
	done := map[uint32]bool{}
	var out []Object
	var visit func(i int, depth int)
	visit = func(i, depth int) {
		v := views[i]
		if done[v.OID] || depth > len(views) {
			return
		}
		for _, d := range v.Depends {
			if j, ok := byOID[d]; ok {
				visit(j, depth+1)
			}
		}
		if !done[v.OID] {
			done[v.OID] = true
			out = append(out, v)
		}
	}
	for i := range views {
		visit(i, 0)
	}
	return out
}

func loadTriggersAndRules(ctx context.Context, q Querier, t spec.QName) ([]Object, error) {
	rows, err := q.Query(ctx, `
SELECT t.oid, 'trigger', t.tgname, pg_catalog.pg_get_triggerdef(t.oid, true), t.tgenabled::text,
       -- a partition's copy of its parent's trigger (13+): made with the parent's
       COALESCE((SELECT pt.tgenabled::text FROM pg_catalog.pg_trigger pt WHERE pt.oid = (pg_catalog.to_jsonb(t) ->> 'tgparentid')::pg_catalog.oid), '')
FROM pg_catalog.pg_trigger t WHERE t.tgrelid = pg_catalog.to_regclass($1) AND NOT t.tgisinternal
UNION ALL
SELECT r.oid, 'rule', r.rulename, pg_catalog.pg_get_ruledef(r.oid, true), r.ev_enabled::text, ''
FROM pg_catalog.pg_rewrite r WHERE r.ev_class = pg_catalog.to_regclass($1) AND r.rulename <> '_RETURN'
ORDER BY 2, 3`, t.Quoted())
	if err != nil {
		return nil, fmt.Errorf("list triggers and rules of %s: %w", t, err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		o := Object{Table: t, Name: spec.QName{Schema: t.Schema}}
		if err := rows.Scan(&o.OID, &o.Kind, &o.Name.Name, &o.Def, &o.Enabled, &o.CloneOf); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Comment is a comment on an object, with what it is on.
type Comment struct {
	// On is the kind as COMMENT ON spells it: TABLE, COLUMN, VIEW, ...
	On     string
	Name   spec.QName
	Column string // COLUMN; CONSTRAINT and TRIGGER: the name of the constraint or trigger
	Table  spec.QName
	Args   string // FUNCTION, PROCEDURE, AGGREGATE, OPERATOR: the arguments; OPERATOR CLASS and FAMILY: the access method
	Text   string
}

// LoadComments reads the comments on the selected tables (and their columns, constraints,
// indexes and triggers), and on every object of whole schemas.
func LoadComments(ctx context.Context, q Querier, schemas []string, tables []spec.QName) ([]Comment, error) {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.Quoted()
	}
	rows, err := q.Query(ctx, `
WITH sel AS (SELECT pg_catalog.to_regclass(t)::pg_catalog.oid AS oid FROM pg_catalog.unnest($2::pg_catalog.text[]) t)
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'i' THEN 'INDEX' WHEN 'I' THEN 'INDEX' ELSE 'TABLE' END,
       n.nspname, c.relname, '', '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objoid = c.oid AND d.objsubid = 0
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid IN (SELECT oid FROM sel) OR n.nspname = ANY($1)
   OR (c.relkind IN ('i', 'I') AND c.oid IN (SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid IN (SELECT oid FROM sel)))
UNION ALL
SELECT 'COLUMN', n.nspname, c.relname, a.attname, '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objoid = c.oid
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid IN (SELECT oid FROM sel) OR n.nspname = ANY($1)
UNION ALL
SELECT 'CONSTRAINT', n.nspname, cl.relname, co.conname, '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint co ON d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objoid = co.oid
JOIN pg_catalog.pg_class cl ON cl.oid = co.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace
WHERE cl.oid IN (SELECT oid FROM sel) OR n.nspname = ANY($1)
UNION ALL
SELECT 'TRIGGER', n.nspname, cl.relname, tg.tgname, '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_trigger tg ON d.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND d.objoid = tg.oid
JOIN pg_catalog.pg_class cl ON cl.oid = tg.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace
WHERE cl.oid IN (SELECT oid FROM sel)
UNION ALL
SELECT CASE COALESCE(pg_catalog.to_jsonb(p) ->> 'prokind', CASE WHEN (pg_catalog.to_jsonb(p) ->> 'proisagg')::bool THEN 'a' WHEN (pg_catalog.to_jsonb(p) ->> 'proiswindow')::bool THEN 'w' ELSE 'f' END) WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, n.nspname, p.proname, '', '', '',
       pg_catalog.pg_get_function_identity_arguments(p.oid), d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_proc p ON d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objoid = p.oid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname, '', '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_type t ON d.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objoid = t.oid
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT 'DOMAIN CONSTRAINT', n.nspname, t.typname, co.conname, '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_constraint co ON d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objoid = co.oid
JOIN pg_catalog.pg_type t ON t.oid = co.contypid JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT 'RULE', n.nspname, cl.relname, r.rulename, '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_rewrite r ON d.classoid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objoid = r.oid
JOIN pg_catalog.pg_class cl ON cl.oid = r.ev_class JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace
WHERE cl.oid IN (SELECT oid FROM sel) OR n.nspname = ANY($1)
UNION ALL
SELECT 'POLICY', n.nspname, cl.relname, pol.polname, '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_policy pol ON d.classoid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objoid = pol.oid
JOIN pg_catalog.pg_class cl ON cl.oid = pol.polrelid JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace
WHERE cl.oid IN (SELECT oid FROM sel) OR n.nspname = ANY($1)
UNION ALL
SELECT 'TEXT SEARCH CONFIGURATION', n.nspname, c.cfgname, '', '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_ts_config c ON d.classoid = 'pg_catalog.pg_ts_config'::pg_catalog.regclass AND d.objoid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT 'TEXT SEARCH DICTIONARY', n.nspname, td.dictname, '', '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_ts_dict td ON d.classoid = 'pg_catalog.pg_ts_dict'::pg_catalog.regclass AND d.objoid = td.oid
JOIN pg_catalog.pg_namespace n ON n.oid = td.dictnamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT 'STATISTICS', n.nspname, st.stxname, '', '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_statistic_ext st ON d.classoid = 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass AND d.objoid = st.oid
JOIN pg_catalog.pg_namespace n ON n.oid = st.stxnamespace WHERE n.nspname = ANY($1) OR st.stxrelid IN (SELECT oid FROM sel)
UNION ALL
SELECT 'OPERATOR', n.nspname, o.oprname, '', '', '',
       COALESCE(pg_catalog.format_type(NULLIF(o.oprleft, 0), NULL), 'NONE') || ', ' || COALESCE(pg_catalog.format_type(NULLIF(o.oprright, 0), NULL), 'NONE'),
       d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_operator o ON d.classoid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND d.objoid = o.oid
JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT 'OPERATOR CLASS', n.nspname, c.opcname, '', '', '', am.amname, d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_opclass c ON d.classoid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.objoid = c.oid
JOIN pg_catalog.pg_am am ON am.oid = c.opcmethod JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT 'OPERATOR FAMILY', n.nspname, f.opfname, '', '', '', am.amname, d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_opfamily f ON d.classoid = 'pg_catalog.pg_opfamily'::pg_catalog.regclass AND d.objoid = f.oid
JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace WHERE n.nspname = ANY($1)
UNION ALL
SELECT 'SCHEMA', n.nspname, n.nspname, '', '', '', '', d.description
FROM pg_catalog.pg_description d JOIN pg_catalog.pg_namespace n ON d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objoid = n.oid
WHERE n.nspname = ANY($1)
ORDER BY 1, 2, 3, 4`, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("list comments: %w", err)
	}
	defer rows.Close()
	var out []Comment
	for rows.Next() {
		var c Comment
		var schema, name, col, tschema, tname string
		if err := rows.Scan(&c.On, &schema, &name, &col, &tschema, &tname, &c.Args, &c.Text); err != nil {
			return nil, fmt.Errorf("list comments: %w", err)
		}
		c.Name = spec.QName{Schema: schema, Name: name}
		c.Column = col
		switch c.On {
		case "COLUMN", "CONSTRAINT", "TRIGGER", "RULE", "POLICY":
			c.Table = c.Name
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].On < out[j].On })
	return out, nil
}
