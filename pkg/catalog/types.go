package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/spec"
)

// UserType is a type the selected tables need that the destination may not have: an enum, a
// domain, a composite or a range type. Types owned by an extension are not listed (the extension
// provides them).
type UserType struct {
	OID  uint32
	Name spec.QName
	Kind string // "e" enum, "d" domain, "c" composite, "r" range

	Labels []string // enum labels, in order

	Base      Type     // domain: the base type
	NotNull   bool     // domain
	Default   string   // domain
	Collation string   // domain: quoted, qualified collation if not the base type's default
	Checks    []Check  // domain constraints
	Fields    []Column // composite attributes (name and type)
	Subtype   Type     // range
	// SubtypeOpclass is a range's subtype operator class when not the default (Collation its
	// collation when not the subtype's); its CANONICAL and SUBTYPE_DIFF functions are in Funcs.
	SubtypeOpclass string
	DependsOn      []uint32 // user types this one needs first

	// Base type ("b"): its support functions by CREATE TYPE option (INPUT, OUTPUT, ...), in
	// CREATE TYPE's order (a range's CANONICAL and SUBTYPE_DIFF too), and its properties. A base type is created as a shell first (kind
	// "p" is a shell type and nothing more), so that its functions can name it.
	Funcs      []TypeFunc
	Length     int16 // internal length, -1 variable
	ByValue    bool
	Align      string // "int4", "double", "char", "int2"
	Storage    string // "plain", "external", "extended", "main"
	Category   string
	Preferred  bool
	DefaultRaw *string // the default's external form
	Element    *Type
	Delimiter  string
	Collatable bool
}

// TypeFunc is one support function of a base type: the CREATE TYPE option and the function.
type TypeFunc struct {
	Option string
	Func   spec.QName
}

// Check is a named CHECK constraint.
type Check struct {
	Name       string
	Definition string
}

const typeQuery = `
SELECT pg_catalog.format_type(ty.oid, $2::int),
       CASE WHEN et.oid IS NOT NULL THEN et.typname ELSE ty.typname END,
       CASE WHEN et.oid IS NOT NULL THEN en.nspname ELSE tn.nspname END,
       et.oid IS NOT NULL,
       COALESCE(et.oid, ty.oid)
FROM pg_catalog.pg_type ty
JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace
LEFT JOIN pg_catalog.pg_type et ON ty.typcategory = 'A' AND et.oid = ty.typelem AND ty.typelem <> 0
LEFT JOIN pg_catalog.pg_namespace en ON en.oid = et.typnamespace
WHERE ty.oid = $1`

// typeOf describes type oid with modifier typmod.
func typeOf(ctx context.Context, q Querier, oid uint32, typmod int32) (Type, error) {
	t := Type{OID: oid}
	err := q.QueryRow(ctx, typeQuery, oid, typmod).Scan(&t.Formatted, &t.Name, &t.Schema, &t.Array, &t.BaseOID)
	if err != nil {
		return t, fmt.Errorf("describe type %d: %w", oid, err)
	}
	t.Modifier = modifierRE.FindString(t.Formatted)
	return t, nil
}

// LoadUserTypes returns the user types the columns of tables need and every type of the whole
// schemas (enums, domains, standalone composites, ranges, base and shell types; not the row
// types of tables, nor array types or multiranges, which come with their type), each after the
// types it depends on.
func LoadUserTypes(ctx context.Context, q Querier, tables []*Table, schemas []string) ([]UserType, error) {
	var queue []uint32
	for _, t := range tables {
		for _, c := range t.Columns {
			if !c.Type.Builtin() {
				queue = append(queue, c.Type.BaseOID)
			}
		}
	}
	if len(schemas) > 0 {
		rows, err := q.Query(ctx, `
SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = ANY($1) AND t.typtype IN ('e', 'd', 'c', 'r', 'b', 'p')
  AND NOT (t.typcategory = 'A' AND t.typelem <> 0)
  AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
  AND `+fmt.Sprintf(notExtensionMember, "t.oid", CatalogType)+`
ORDER BY n.nspname, t.typname`, schemas)
		if err != nil {
			return nil, fmt.Errorf("list the schemas' types: %w", err)
		}
		more, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
		if err != nil {
			return nil, fmt.Errorf("list the schemas' types: %w", err)
		}
		queue = append(queue, more...)
	}
	loaded := map[uint32]*UserType{}
	skip := map[uint32]bool{}
	var order []uint32
	for len(queue) > 0 {
		oid := queue[0]
		queue = queue[1:]
		if loaded[oid] != nil || skip[oid] {
			continue
		}
		ut, ok, err := loadUserType(ctx, q, oid)
		if err != nil {
			return nil, err
		}
		if !ok {
			skip[oid] = true
			continue
		}
		loaded[oid] = ut
		order = append(order, oid)
		queue = append(queue, ut.DependsOn...)
	}
	// Dependencies first: a depth-first walk over the discovery order.
	var out []UserType
	done := map[uint32]bool{}
	var visit func(oid uint32)
	visit = func(oid uint32) {
		ut := loaded[oid]
		if ut == nil || done[oid] {
			return
		}
		done[oid] = true
		for _, dep := range ut.DependsOn {
			visit(dep)
		}
		out = append(out, *ut)
	}
	for _, oid := range order {
		visit(oid)
	}
	return out, nil
}

// loadUserType reads one type; ok is false for types Skein does not create (built-in,
// extension-owned, or a multirange, which comes with its range: the range is returned instead
// through DependsOn of the caller's walk).
func loadUserType(ctx context.Context, q Querier, oid uint32) (*UserType, bool, error) {
	ut := &UserType{OID: oid}
	var fromExtension bool
	var baseOID, relid, rangeOf uint32
	var baseMod int32
	var def, coll *string
	err := q.QueryRow(ctx, `
SELECT n.nspname, t.typname, t.typtype::text, t.typbasetype, t.typtypmod, t.typnotnull,
       pg_catalog.pg_get_expr(t.typdefaultbin, 0), t.typrelid,
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
               AND d.objid = t.oid AND d.deptype = 'e'),
       COALESCE((SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE (pg_catalog.to_jsonb(r) ->> 'rngmultitypid')::pg_catalog.oid = t.oid), 0), -- 14+
       CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation
            THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) END
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_catalog.pg_collation co ON co.oid = t.typcollation
LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
WHERE t.oid = $1`, oid).Scan(&ut.Name.Schema, &ut.Name.Name, &ut.Kind, &baseOID, &baseMod, &ut.NotNull, &def, &relid,
		&fromExtension, &rangeOf, &coll)
	if err != nil {
		return nil, false, fmt.Errorf("load type %d: %w", oid, err)
	}
	if ut.Name.Schema == "pg_catalog" || ut.Name.Schema == "information_schema" || fromExtension {
		return nil, false, nil
	}
	switch ut.Kind {
	case "m":
		// Created with its range type: load that instead.
		r, ok, err := loadUserType(ctx, q, rangeOf)
		return r, ok, err
	case "e":
		rows, err := q.Query(ctx, `SELECT enumlabel::text FROM pg_catalog.pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder`, oid)
		if err != nil {
			return nil, false, fmt.Errorf("load enum %s: %w", ut.Name, err)
		}
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				rows.Close()
				return nil, false, err
			}
			ut.Labels = append(ut.Labels, l)
		}
		rows.Close()
	case "d":
		if ut.Base, err = typeOf(ctx, q, baseOID, baseMod); err != nil {
			return nil, false, err
		}
		if def != nil {
			ut.Default = *def
		}
		if coll != nil {
			ut.Collation = *coll
		}
		rows, err := q.Query(ctx, `SELECT conname::text, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
WHERE contypid = $1 AND contype = 'c' ORDER BY conname`, oid)
		if err != nil {
			return nil, false, fmt.Errorf("load domain %s: %w", ut.Name, err)
		}
		for rows.Next() {
			var c Check
			if err := rows.Scan(&c.Name, &c.Definition); err != nil {
				rows.Close()
				return nil, false, err
			}
			ut.Checks = append(ut.Checks, c)
		}
		rows.Close()
		ut.addDep(ut.Base)
	case "c":
		rows, err := q.Query(ctx, `SELECT attname::text, atttypid, atttypmod FROM pg_catalog.pg_attribute
WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, relid)
		if err != nil {
			return nil, false, fmt.Errorf("load composite %s: %w", ut.Name, err)
		}
		type field struct {
			name string
			oid  uint32
			mod  int32
		}
		var fields []field
		for rows.Next() {
			var f field
			if err := rows.Scan(&f.name, &f.oid, &f.mod); err != nil {
				rows.Close()
				return nil, false, err
			}
			fields = append(fields, f)
		}
		rows.Close()
		for _, f := range fields {
			ft, err := typeOf(ctx, q, f.oid, f.mod)
			if err != nil {
				return nil, false, err
			}
			ut.Fields = append(ut.Fields, Column{Name: f.name, Type: ft})
			ut.addDep(ft)
		}
	case "r":
		var sub uint32
		var funcs []uint32
		if err := q.QueryRow(ctx, `
SELECT r.rngsubtype, ARRAY[r.rngcanonical, r.rngsubdiff]::pg_catalog.oid[],
       COALESCE((SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
                 FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                 WHERE co.oid = r.rngcollation AND co.oid <> st.typcollation), ''),
       COALESCE((SELECT pg_catalog.quote_ident(opn.nspname) || '.' || pg_catalog.quote_ident(opc.opcname)
                 FROM pg_catalog.pg_opclass opc JOIN pg_catalog.pg_namespace opn ON opn.oid = opc.opcnamespace
                 WHERE opc.oid = r.rngsubopc AND NOT opc.opcdefault), '')
FROM pg_catalog.pg_range r JOIN pg_catalog.pg_type st ON st.oid = r.rngsubtype WHERE r.rngtypid = $1`, oid).Scan(&sub, &funcs, &ut.Collation, &ut.SubtypeOpclass); err != nil {
			return nil, false, fmt.Errorf("load range %s: %w", ut.Name, err)
		}
		if err := ut.loadFuncs(ctx, q, funcs, []string{"CANONICAL", "SUBTYPE_DIFF"}); err != nil {
			return nil, false, err
		}
		if ut.Subtype, err = typeOf(ctx, q, sub, -1); err != nil {
			return nil, false, err
		}
		ut.addDep(ut.Subtype)
	case "p":
		// A shell type (CREATE TYPE name, never completed); other pseudo-types are built in.
	case "b":
		if err := loadBaseType(ctx, q, ut); err != nil {
			return nil, false, err
		}
	default:
		return nil, false, fmt.Errorf("type %s: kind %q is not supported yet", ut.Name, ut.Kind)
	}
	return ut, true, nil
}

// loadBaseType reads a base type's support functions and properties.
func loadBaseType(ctx context.Context, q Querier, ut *UserType) error {
	var funcs []uint32
	var elem uint32
	err := q.QueryRow(ctx, `
SELECT ARRAY[t.typinput, t.typoutput, t.typreceive, t.typsend, t.typmodin, t.typmodout, t.typanalyze, -- typsubscript: 14+

             COALESCE(NULLIF(pg_catalog.to_jsonb(t) ->> 'typsubscript', '-')::pg_catalog.regproc::pg_catalog.oid, 0)]::pg_catalog.oid[],
       t.typlen, t.typbyval, t.typalign::text, t.typstorage::text, t.typcategory::text, t.typispreferred, t.typdefault,
       t.typelem, t.typdelim::text, t.typcollation <> 0
FROM pg_catalog.pg_type t WHERE t.oid = $1`, ut.OID).Scan(&funcs, &ut.Length, &ut.ByValue, &ut.Align, &ut.Storage, &ut.Category,
		&ut.Preferred, &ut.DefaultRaw, &elem, &ut.Delimiter, &ut.Collatable)
	if err != nil {
		return fmt.Errorf("load base type %s: %w", ut.Name, err)
	}
	ut.Align = map[string]string{"c": "char", "s": "int2", "i": "int4", "d": "double"}[ut.Align]
	ut.Storage = map[string]string{"p": "plain", "e": "external", "x": "extended", "m": "main"}[ut.Storage]
	if err := ut.loadFuncs(ctx, q, funcs, []string{"INPUT", "OUTPUT", "RECEIVE", "SEND", "TYPMOD_IN", "TYPMOD_OUT", "ANALYZE", "SUBSCRIPT"}); err != nil {
		return err
	}
	if elem != 0 {
		et, err := typeOf(ctx, q, elem, -1)
		if err != nil {
			return err
		}
		ut.Element = &et
		ut.addDep(et)
	}
	return nil
}

func (ut *UserType) addDep(t Type) {
	if !t.Builtin() {
		ut.DependsOn = append(ut.DependsOn, t.BaseOID)
	}
}

// loadFuncs names the support functions funcs (OIDs, 0 = none) of the options at the same
// positions into ut.Funcs.
func (ut *UserType) loadFuncs(ctx context.Context, q Querier, funcs []uint32, options []string) error {
	for i, f := range funcs {
		if f == 0 {
			continue
		}
		var name spec.QName
		if err := q.QueryRow(ctx, `SELECT n.nspname, p.proname FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = $1`, f).Scan(&name.Schema, &name.Name); err != nil {
			return fmt.Errorf("load type %s: %s function: %w", ut.Name, options[i], err)
		}
		ut.Funcs = append(ut.Funcs, TypeFunc{Option: options[i], Func: name})
	}
	return nil
}

// NeedsShell says whether the type is created as a shell first: a base type (its input and
// output functions take and return it), a range with a canonical function (which takes it), and
// a shell type itself.
func (ut UserType) NeedsShell() bool {
	switch ut.Kind {
	case "b", "p":
		return true
	case "r":
		for _, f := range ut.Funcs {
			if f.Option == "CANONICAL" {
				return true
			}
		}
	}
	return false
}
