// Package catalog reads table definitions from a PostgreSQL server's catalogs. Everything it
// returns is what Skein needs to recreate, copy and apply changes to a table elsewhere.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/spec"
)

// Querier is what the catalog reads need: a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Type is a column's data type.
type Type struct {
	OID       uint32 // the type's OID on the source
	BaseOID   uint32 // the element type's OID for arrays, else OID
	Schema    string // namespace of the type (of the element type for arrays)
	Name      string // internal name (of the element type for arrays), e.g. "varchar"
	Modifier  string // type modifier as written, e.g. "(20)" or "(10,2)"; "" for none
	Array     bool
	Formatted string // format_type() output, e.g. "character varying(20)[]"
}

// Builtin reports whether the type (or its element type) lives in pg_catalog.
func (t Type) Builtin() bool { return t.Schema == "pg_catalog" }

// Column is one table column.
type Column struct {
	Name      string
	Num       int16
	Type      Type
	NotNull   bool
	Default   string // default expression, qualified (search_path was empty); "" = none
	Identity  string // "a" ALWAYS, "d" BY DEFAULT, "" none
	Generated string // stored generation expression; "" = a regular column
	Collation string // quoted, qualified collation if not the type's default; "" otherwise
	// OwnedSequence is the sequence owned by this column (SERIAL), if any.
	OwnedSequence *spec.QName
	// Inherited: the column comes from a parent the table inherits from (not a partition's
	// parent), and is not declared by the table itself.
	Inherited bool
	// Merged: declared by the table and inherited from a parent whose column is generated (the
	// generation expression is the parent's).
	Merged bool
	// ParentNotNull: a parent it inherits from (not a partition's) has the column NOT NULL,
	// which the table inherits.
	ParentNotNull bool
	// Storage is the column's storage when not its type's ("plain", "external", "extended",
	// "main"), Compression its compression method when set ("pglz", "lz4"; 14+).
	Storage, Compression string
	// Statistics is the column's statistics target when set (nil: the default), Options its
	// attribute options ("n_distinct=100").
	Statistics *int
	Options    []string
	// IdentitySequence and IdentityOptions are an identity column's sequence and its options
	// ("START WITH 1 INCREMENT BY 1 ...").
	IdentitySequence *spec.QName
	IdentityOptions  string
}

// Constraint is a table constraint.
type Constraint struct {
	Name       string
	Kind       string // "p" primary key, "u" unique, "f" foreign key, "c" check, "x" exclusion
	Columns    []string
	RefTable   spec.QName // foreign keys
	RefColumns []string   // foreign keys
	OnUpdate   string     // foreign keys: a r c n d (pg_constraint codes)
	OnDelete   string
	Match      string // f p s
	Deferrable bool
	Deferred   bool
	Definition string // pg_get_constraintdef, used for CHECK
	OID        uint32
	NotValid   bool // added NOT VALID: not checked against the rows it had then
	Local      bool // declared by the table itself (not only inherited)
	// A primary key's or unique constraint's INCLUDE columns, its index's storage parameters,
	// and (unique, 15+) NULLS NOT DISTINCT.
	Include          []string
	IndexOptions     []string
	NullsNotDistinct bool
	// FromParent: a partition's copy of its parent's constraint (made when the parent's is).
	FromParent bool
	// Separate (set by the caller) adds a CHECK after its table, by its own statement: it
	// calls a function that needs the table first (see ddl.AddCheck).
	Separate bool
}

// Table is one table and what belongs to it.
type Table struct {
	Name            spec.QName
	OID             uint32
	Columns         []Column
	Constraints     []Constraint
	Unlogged        bool
	ReplicaIdentity string // d default, n nothing, f full, i index
	Blocks          int64  // current size in blocks
	BlockSize       int64
	RowsEstimate    int64
	// AccessMethod is its table access method: "heap" (before PostgreSQL 12 tables have none and
	// are heap), or an extension's (columnar stores, which hold many more rows per block).
	AccessMethod string
	// PartitionKey is a partitioned table's PARTITION BY clause ("RANGE (ts)"), else "".
	PartitionKey string
	// PartitionOf and PartitionBound describe a partition: its parent and FOR VALUES clause.
	PartitionOf    *spec.QName
	PartitionBound string
	// Inherits are the tables it inherits from (INHERITS, not a partition's parent), in order.
	Inherits []spec.QName
	// Options are its storage parameters (WITH), e.g. "fillfactor=70", "toast.fillfactor=80".
	Options []string
	// OfType is the composite type of a typed table (CREATE TABLE ... OF type), nil for others.
	OfType *spec.QName
	// RowSecurity and ForceRowSecurity: row level security is enabled (and applies to the
	// table's owner too).
	RowSecurity, ForceRowSecurity bool
	// ServerVersion is the server_version_num of the server it was read from.
	ServerVersion int
}

// PrimaryKey returns the table's primary key, or nil.
func (t *Table) PrimaryKey() *Constraint {
	for i := range t.Constraints {
		if t.Constraints[i].Kind == "p" {
			return &t.Constraints[i]
		}
	}
	return nil
}

// Key returns the columns that identify a row: the primary key, else the first unique constraint
// whose columns are all NOT NULL, else nil.
func (t *Table) Key() []string {
	if pk := t.PrimaryKey(); pk != nil {
		return pk.Columns
	}
	for _, c := range t.Constraints {
		if c.Kind != "u" {
			continue
		}
		ok := true
		for _, name := range c.Columns {
			if col := t.Column(name); col == nil || !col.NotNull {
				ok = false
			}
		}
		if ok {
			return c.Columns
		}
	}
	return nil
}

// Column finds a column by name.
func (t *Table) Column(name string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// CopyColumns are the columns whose values are copied: all but generated ones.
func (t *Table) CopyColumns() []Column {
	var out []Column
	for _, c := range t.Columns {
		if c.Generated == "" {
			out = append(out, c)
		}
	}
	return out
}

// AllBuiltinTypes reports whether every copied column has a pg_catalog type, so the binary COPY
// format (which embeds type OIDs for arrays and composites) is safe between two servers.
func (t *Table) AllBuiltinTypes() bool {
	for _, c := range t.CopyColumns() {
		if !c.Type.Builtin() {
			return false
		}
	}
	return true
}

// Sequence is a sequence with its current state.
type Sequence struct {
	OID       uint32
	Name      spec.QName
	TypeName  string // internal name of the data type, e.g. "int8"
	Start     int64
	Increment int64
	Min       int64
	Max       int64
	Cache     int64
	Cycle     bool
	LastValue int64
	IsCalled  bool
	OwnedBy   *spec.QName // table owning it, with OwnedByColumn
	OwnedCol  string
	Identity  bool // belongs to an identity column (created with the column)
	Unlogged  bool // 15+
}

// excludedSchemas are never listed.
const excludedSchemas = `('pg_catalog', 'information_schema', 'pg_toast', 'skein')`

// ListTables returns the ordinary and partitioned tables (partitions included) of each non-system
// schema, schemas without tables included with an empty list.
func ListTables(ctx context.Context, q Querier) (map[string][]string, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname
FROM pg_catalog.pg_namespace n
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
WHERE n.nspname NOT IN `+excludedSchemas+` AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	out := map[string][]string{}
	for rows.Next() {
		var schema string
		var table *string
		if err := rows.Scan(&schema, &table); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		if _, ok := out[schema]; !ok {
			out[schema] = []string{}
		}
		if table != nil {
			out[schema] = append(out[schema], *table)
		}
	}
	return out, rows.Err()
}

// ClearSearchPath makes catalog functions (pg_get_expr, format_type) qualify every name. Call it
// inside the transaction the reads use.
func ClearSearchPath(ctx context.Context, q Querier) error {
	_, err := q.Exec(ctx, `SELECT pg_catalog.set_config('search_path', '', true)`)
	return err
}

var modifierRE = regexp.MustCompile(`\([0-9, -]+\)`) // numeric's scale may be negative (15+)

// LoadTable reads one table's definition. Call ClearSearchPath first in the same transaction.
func LoadTable(ctx context.Context, q Querier, name spec.QName) (*Table, error) {
	defs, err := LoadTables(ctx, q, []spec.TableMap{{Source: name, Dest: name}})
	if err != nil {
		return nil, err
	}
	return defs[0], nil
}

// tableSQL reads the tables' rows in pg_class ($1 their schemas, $2 their names), each with its
// position in the arrays (from 1); scan reads one.
const tableSQL = `
SELECT u.i, pg_catalog.current_setting('server_version_num')::pg_catalog.int4, c.oid, c.relkind::text, c.relpersistence::text, c.relreplident::text,
       pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int8,
       pg_catalog.current_setting('block_size')::int8,
       GREATEST(c.reltuples, 0)::int8,
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) ELSE '' END,
       pn.nspname, p.relname, COALESCE(pg_catalog.pg_get_expr(c.relpartbound, c.oid), ''),
       ARRAY(SELECT hn.nspname::pg_catalog.text
             FROM pg_catalog.pg_inherits hi JOIN pg_catalog.pg_class h ON h.oid = hi.inhparent
             JOIN pg_catalog.pg_namespace hn ON hn.oid = h.relnamespace
             WHERE hi.inhrelid = c.oid AND NOT c.relispartition ORDER BY hi.inhseqno),
       ARRAY(SELECT h.relname::pg_catalog.text
             FROM pg_catalog.pg_inherits hi JOIN pg_catalog.pg_class h ON h.oid = hi.inhparent
             WHERE hi.inhrelid = c.oid AND NOT c.relispartition ORDER BY hi.inhseqno),
       COALESCE(c.reloptions, '{}') || ARRAY(SELECT 'toast.' || o FROM pg_catalog.pg_class tc, pg_catalog.unnest(tc.reloptions) o
                                            WHERE tc.oid = c.reltoastrelid),
       (SELECT tn.nspname FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace WHERE ty.oid = c.reloftype),
       (SELECT ty.typname FROM pg_catalog.pg_type ty WHERE ty.oid = c.reloftype),
       c.relrowsecurity, c.relforcerowsecurity,
       COALESCE((SELECT am.amname::pg_catalog.text FROM pg_catalog.pg_am am WHERE am.oid = c.relam), 'heap')
FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) WITH ORDINALITY AS u(nspname, relname, i)
JOIN pg_catalog.pg_namespace n ON n.nspname = u.nspname::pg_catalog.name
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = u.relname::pg_catalog.name
LEFT JOIN pg_catalog.pg_inherits i ON c.relispartition AND i.inhrelid = c.oid
LEFT JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace`

// scan reads a row of tableSQL into t, named by the row's position in the query's arrays
// (nameAt; ok false: a row for no table asked for, which the caller skips).
func (t *Table) scan(row pgx.Row, nameAt func(at int64) (spec.QName, bool)) (ok bool, err error) {
	var relkind, persistence string
	var parentSchema, parentName *string
	var inhSchemas, inhNames []string
	var ofSchema, ofName *string
	var at int64
	err = row.Scan(&at, &t.ServerVersion, &t.OID, &relkind, &persistence, &t.ReplicaIdentity, &t.Blocks, &t.BlockSize, &t.RowsEstimate,
		&t.PartitionKey, &parentSchema, &parentName, &t.PartitionBound, &inhSchemas, &inhNames, &t.Options, &ofSchema, &ofName, &t.RowSecurity, &t.ForceRowSecurity, &t.AccessMethod)
	if ofSchema != nil && ofName != nil {
		t.OfType = &spec.QName{Schema: *ofSchema, Name: *ofName}
	}
	for i := range min(len(inhSchemas), len(inhNames)) {
		t.Inherits = append(t.Inherits, spec.QName{Schema: inhSchemas[i], Name: inhNames[i]})
	}
	if err != nil {
		return false, fmt.Errorf("load tables: %w", err)
	}
	if t.Name, ok = nameAt(at); !ok {
		return false, nil
	}
	if relkind != "r" && relkind != "p" {
		return false, fmt.Errorf("load table %s: relation kind %q is not supported", t.Name, relkind)
	}
	if parentSchema != nil && parentName != nil {
		t.PartitionOf = &spec.QName{Schema: *parentSchema, Name: *parentName}
	}
	t.Unlogged = persistence == "u"
	return true, nil
}

// columnsSQL reads the columns of tables ($1 their OIDs), by table; scanColumns reads them.
const columnsSQL = `
SELECT a.attrelid, a.attname, a.attnum, a.atttypid,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       CASE WHEN et.oid IS NOT NULL THEN et.typname ELSE ty.typname END,
       CASE WHEN et.oid IS NOT NULL THEN en.nspname ELSE tn.nspname END,
       et.oid IS NOT NULL, COALESCE(et.oid, ty.oid),
       a.attnotnull, a.attidentity::text, COALESCE(pg_catalog.to_jsonb(a) ->> 'attgenerated', ''), -- 12+
       pg_catalog.pg_get_expr(d.adbin, d.adrelid),
       CASE WHEN a.attcollation <> ty.typcollation AND a.attcollation <> 0
            THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) END,
       seq.nspname, seq.relname,
       NOT a.attislocal AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class r WHERE r.oid = a.attrelid AND r.relispartition),
       a.attislocal AND a.attinhcount > 0 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class r WHERE r.oid = a.attrelid AND r.relispartition)
         AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits hi JOIN pg_catalog.pg_attribute pa ON pa.attrelid = hi.inhparent
                     WHERE hi.inhrelid = a.attrelid AND pa.attname = a.attname AND COALESCE(pg_catalog.to_jsonb(pa) ->> 'attgenerated', '') <> ''),
       EXISTS (SELECT 1 FROM pg_catalog.pg_inherits hi JOIN pg_catalog.pg_attribute pa ON pa.attrelid = hi.inhparent
               JOIN pg_catalog.pg_class r ON r.oid = a.attrelid AND NOT r.relispartition
               WHERE hi.inhrelid = a.attrelid AND pa.attname = a.attname AND pa.attnotnull),
       CASE WHEN a.attstorage <> ty.typstorage
            THEN CASE a.attstorage WHEN 'p' THEN 'plain' WHEN 'e' THEN 'external' WHEN 'x' THEN 'extended' WHEN 'm' THEN 'main' END
            ELSE '' END,
       CASE COALESCE(pg_catalog.to_jsonb(a) ->> 'attcompression', '') WHEN 'p' THEN 'pglz' WHEN 'l' THEN 'lz4' ELSE '' END, -- 14+
       ids.nspname, ids.relname, COALESCE(ids.options, ''),
       NULLIF(COALESCE((pg_catalog.to_jsonb(a) ->> 'attstattarget')::pg_catalog.int4, -1), -1), -- the default: -1, NULL from 17
       COALESCE(a.attoptions, '{}')
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace
LEFT JOIN pg_catalog.pg_type et ON ty.typcategory = 'A' AND et.oid = ty.typelem AND ty.typelem <> 0
LEFT JOIN pg_catalog.pg_namespace en ON en.oid = et.typnamespace
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN LATERAL (
  -- The sequence a SERIAL column owns (other objects, such as indexes, depend on columns too).
  SELECT sn.nspname, s.relname FROM pg_catalog.pg_depend dep
  JOIN pg_catalog.pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
  JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
  WHERE dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
    AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype = 'a'
  LIMIT 1) seq ON true
LEFT JOIN LATERAL (
  -- An identity column's sequence and its options.
  SELECT sn.nspname, s.relname,
         pg_catalog.format('START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s%s', p.seqstart, p.seqincrement,
           p.seqmin, p.seqmax, p.seqcache, CASE WHEN p.seqcycle THEN ' CYCLE' ELSE '' END,
           CASE WHEN s.relpersistence = 'u' AND r.relpersistence <> 'u' THEN ' UNLOGGED'
                WHEN s.relpersistence <> 'u' AND r.relpersistence = 'u' THEN ' LOGGED' ELSE '' END) AS options
  FROM pg_catalog.pg_depend dep
  JOIN pg_catalog.pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
  JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_catalog.pg_sequence p ON p.seqrelid = s.oid
  JOIN pg_catalog.pg_class r ON r.oid = a.attrelid
  WHERE a.attidentity <> '' AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
    AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype = 'i'
  LIMIT 1) ids ON true
WHERE a.attrelid = ANY($1::pg_catalog.oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum`

// scanColumns reads the rows of columnsSQL into the tables, by OID.
func scanColumns(rows pgx.Rows, byOID map[uint32]*Table) error {
	defer rows.Close()
	for rows.Next() {
		var c Column
		var rel uint32
		var def, coll, seqSchema, seqName, idSchema, idName *string
		if err := rows.Scan(&rel, &c.Name, &c.Num, &c.Type.OID, &c.Type.Formatted, &c.Type.Name, &c.Type.Schema,
			&c.Type.Array, &c.Type.BaseOID, &c.NotNull, &c.Identity, &c.Generated, &def, &coll, &seqSchema, &seqName,
			&c.Inherited, &c.Merged, &c.ParentNotNull, &c.Storage, &c.Compression, &idSchema, &idName, &c.IdentityOptions, &c.Statistics, &c.Options); err != nil {
			return err
		}
		c.Type.Modifier = modifierRE.FindString(c.Type.Formatted)
		if def != nil {
			if c.Generated != "" {
				c.Generated = *def
			} else {
				c.Default = *def
			}
		} else {
			c.Generated = ""
		}
		if coll != nil {
			c.Collation = *coll
		}
		if idSchema != nil && idName != nil {
			c.IdentitySequence = &spec.QName{Schema: *idSchema, Name: *idName}
		}
		if seqName != nil && seqSchema != nil {
			c.OwnedSequence = &spec.QName{Schema: *seqSchema, Name: *seqName}
		}
		if t := byOID[rel]; t != nil {
			t.Columns = append(t.Columns, c)
		}
	}
	return rows.Err()
}

// constraintsSQL reads the constraints of tables ($1 their OIDs), by table; scanConstraints reads
// them.
const constraintsSQL = `
SELECT c.conrelid, c.conname, c.contype::text,
       ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(c.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
       ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(c.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
       COALESCE(rn.nspname, ''), COALESCE(r.relname, ''),
       c.confupdtype::text, c.confdeltype::text, c.confmatchtype::text, c.condeferrable, c.condeferred,
       pg_catalog.pg_get_constraintdef(c.oid), c.oid, NOT c.convalidated, c.conislocal,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_index ci, pg_catalog.unnest(ci.indkey::pg_catalog.int2[]) WITH ORDINALITY k(n, i)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
             WHERE c.contype IN ('p', 'u') AND ci.indexrelid = c.conindid AND k.i > COALESCE((pg_catalog.to_jsonb(ci) ->> 'indnkeyatts')::int, ci.indnatts) ORDER BY k.i), -- 11+
       COALESCE((SELECT ic.reloptions FROM pg_catalog.pg_class ic WHERE c.contype IN ('p', 'u') AND ic.oid = c.conindid), '{}'),
       COALESCE((SELECT (pg_catalog.to_jsonb(ci) ->> 'indnullsnotdistinct')::bool FROM pg_catalog.pg_index ci -- 15+
                 WHERE c.contype = 'u' AND ci.indexrelid = c.conindid), false),
       COALESCE((pg_catalog.to_jsonb(c) ->> 'conparentid')::pg_catalog.oid, 0) <> 0 -- 11+
FROM pg_catalog.pg_constraint c
LEFT JOIN pg_catalog.pg_class r ON r.oid = c.confrelid
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.conrelid = ANY($1::pg_catalog.oid[]) AND c.contype IN ('p', 'u', 'f', 'c', 'x')
  -- not the copies a foreign key to a partitioned table keeps for each partition it references
  -- (they come with it)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint p WHERE p.oid = (pg_catalog.to_jsonb(c) ->> 'conparentid')::pg_catalog.oid AND p.conrelid = c.conrelid) -- 11+
ORDER BY c.conrelid, c.contype DESC, c.conname`

// scanConstraints reads the rows of constraintsSQL into the tables, by OID.
func scanConstraints(rows pgx.Rows, byOID map[uint32]*Table) error {
	defer rows.Close()
	for rows.Next() {
		var c Constraint
		var rel uint32
		if err := rows.Scan(&rel, &c.Name, &c.Kind, &c.Columns, &c.RefColumns, &c.RefTable.Schema, &c.RefTable.Name,
			&c.OnUpdate, &c.OnDelete, &c.Match, &c.Deferrable, &c.Deferred, &c.Definition, &c.OID, &c.NotValid, &c.Local,
			&c.Include, &c.IndexOptions, &c.NullsNotDistinct, &c.FromParent); err != nil {
			return err
		}
		if t := byOID[rel]; t != nil {
			t.Constraints = append(t.Constraints, c)
		}
	}
	return rows.Err()
}

// Unpublishable lists the tables a publication cannot hold: unlogged ones (they write no WAL),
// and, before PostgreSQL 13, partitioned tables (their partitions are published instead, each
// selected with them, and their changes applied to the same partitions on the destination).
func Unpublishable(ctx context.Context, q Querier, tables []spec.TableMap) (map[spec.QName]bool, error) {
	var schemas []string
	for _, t := range tables {
		if !slices.Contains(schemas, t.Source.Schema) {
			schemas = append(schemas, t.Source.Schema)
		}
	}
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE (c.relpersistence = 'u' AND c.relkind IN ('r', 'p')
       OR c.relkind = 'p' AND pg_catalog.current_setting('server_version_num')::pg_catalog.int4 < 130000)
  AND n.nspname = ANY($1)`, schemas)
	if err != nil {
		return nil, fmt.Errorf("find unpublishable tables: %w", err)
	}
	out := map[spec.QName]bool{}
	var name spec.QName
	if _, err := pgx.ForEachRow(rows, []any{&name.Schema, &name.Name}, func() error {
		out[name] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("find unpublishable tables: %w", err)
	}
	return out, nil
}

// LoadSequences reads the sequences the columns of tables own (SERIAL, identity) and the other
// sequences their defaults call nextval on (created before the tables, restored from older
// dumps, or shared), each once, with their current values.
func LoadSequences(ctx context.Context, q Querier, tables []*Table) ([]Sequence, error) {
	oids := make([]uint32, len(tables))
	for i, t := range tables {
		oids[i] = t.OID
	}
	owned, err := querySequences(ctx, q, oids, `
SELECT dep.refobjid, s.oid, sn.nspname, s.relname, ty.typname, p.seqstart, p.seqincrement, p.seqmin, p.seqmax, p.seqcache,
       p.seqcycle, a.attname, dep.deptype = 'i', s.relpersistence = 'u'
FROM pg_catalog.pg_depend dep
JOIN pg_catalog.pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_sequence p ON p.seqrelid = s.oid
JOIN pg_catalog.pg_type ty ON ty.oid = p.seqtypid
JOIN pg_catalog.pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND dep.refobjid = ANY($1) AND dep.deptype IN ('a', 'i')
ORDER BY s.relname`)
	if err != nil {
		return nil, err
	}
	// Sequences a default uses without its column owning them (a partition's columns use the
	// parent's): created as standalone sequences unless a selected table owns them.
	used, err := querySequences(ctx, q, oids, `
SELECT DISTINCT ad.adrelid, s.oid, sn.nspname, s.relname, ty.typname, p.seqstart, p.seqincrement, p.seqmin, p.seqmax, p.seqcache,
       p.seqcycle, '', false, s.relpersistence = 'u'
FROM pg_catalog.pg_attrdef ad
JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = ad.oid
  AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
JOIN pg_catalog.pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_sequence p ON p.seqrelid = s.oid
JOIN pg_catalog.pg_type ty ON ty.oid = p.seqtypid
WHERE ad.adrelid = ANY($1)
ORDER BY 3, 4`)
	if err != nil {
		return nil, err
	}
	var out []Sequence
	seen := map[spec.QName]bool{}
	for _, t := range tables {
		for _, sq := range owned[t.OID] {
			if !seen[sq.Name] {
				seen[sq.Name] = true
				sq.OwnedBy = &t.Name
				out = append(out, sq)
			}
		}
	}
	for _, t := range tables {
		for _, sq := range used[t.OID] {
			if !seen[sq.Name] {
				seen[sq.Name] = true
				out = append(out, sq)
			}
		}
	}
	if err := readSequenceValues(ctx, q, out); err != nil {
		return nil, err
	}
	return out, nil
}

// querySequences runs one of LoadSequences' queries for the tables (oids) and returns each
// table's sequences, in the query's order.
func querySequences(ctx context.Context, q Querier, oids []uint32, sql string) (map[uint32][]Sequence, error) {
	rows, err := q.Query(ctx, sql, oids)
	if err != nil {
		return nil, fmt.Errorf("load sequences: %w", err)
	}
	defer rows.Close()
	out := map[uint32][]Sequence{}
	for rows.Next() {
		var s Sequence
		var table uint32
		if err := rows.Scan(&table, &s.OID, &s.Name.Schema, &s.Name.Name, &s.TypeName, &s.Start, &s.Increment, &s.Min, &s.Max,
			&s.Cache, &s.Cycle, &s.OwnedCol, &s.Identity, &s.Unlogged); err != nil {
			return nil, fmt.Errorf("load sequences: %w", err)
		}
		out[table] = append(out[table], s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load sequences: %w", err)
	}
	return out, nil
}

// readSequenceValues reads each sequence's state, pipelined when q can.
func readSequenceValues(ctx context.Context, q Querier, seqs []Sequence) error {
	b, ok := q.(batcher)
	var batch pgx.Batch
	for i := range seqs {
		sq := &seqs[i]
		sql := `SELECT last_value, is_called FROM ` + sq.Name.Quoted()
		scan := func(row pgx.Row) error {
			if err := row.Scan(&sq.LastValue, &sq.IsCalled); err != nil {
				return fmt.Errorf("read sequence %s: %w", sq.Name, err)
			}
			return nil
		}
		if ok {
			batch.Queue(sql).QueryRow(scan)
		} else if err := scan(q.QueryRow(ctx, sql)); err != nil {
			return err
		}
	}
	if ok && batch.Len() > 0 {
		return b.SendBatch(ctx, &batch).Close()
	}
	return nil
}

// LoadSchemaSequences reads the sequences of whole schemas that no column owns (owned ones come
// with their tables, see LoadSequences), with their current values.
func LoadSchemaSequences(ctx context.Context, q Querier, schemas []string) ([]Sequence, error) {
	rows, err := q.Query(ctx, `
SELECT s.oid, sn.nspname, s.relname, ty.typname, p.seqstart, p.seqincrement, p.seqmin, p.seqmax, p.seqcache, p.seqcycle,
       s.relpersistence = 'u'
FROM pg_catalog.pg_class s
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_sequence p ON p.seqrelid = s.oid
JOIN pg_catalog.pg_type ty ON ty.oid = p.seqtypid
WHERE s.relkind = 'S' AND sn.nspname = ANY($1)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = s.oid AND d.deptype IN ('a', 'i', 'e')
                  AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
ORDER BY 2, 3`, schemas)
	if err != nil {
		return nil, fmt.Errorf("load sequences: %w", err)
	}
	var seqs []Sequence
	for rows.Next() {
		var s Sequence
		if err := rows.Scan(&s.OID, &s.Name.Schema, &s.Name.Name, &s.TypeName, &s.Start, &s.Increment, &s.Min, &s.Max, &s.Cache, &s.Cycle, &s.Unlogged); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load sequences: %w", err)
		}
		seqs = append(seqs, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load sequences: %w", err)
	}
	return seqs, readSequenceValues(ctx, q, seqs)
}

// BeginRead begins the transaction catalog reads use: read-only, repeatable read, inside the
// exported snapshot when one is given, and with an empty search_path so catalog functions qualify
// every name.
func BeginRead(ctx context.Context, conn *pgx.Conn, snapshot string) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	if err := ImportSnapshot(ctx, tx, snapshot); err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	if err := ClearSearchPath(ctx, tx); err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}

// LoadTables reads the source definitions of the selected tables, in order. Use a transaction
// from BeginRead.
//
// Three queries per loadBatch tables, each for all of them: a task of 10,000 tables reads its
// definitions in a few hundred milliseconds, where three queries per table took seconds of the
// source's time in every step that reads them.
func LoadTables(ctx context.Context, q Querier, tables []spec.TableMap) ([]*Table, error) {
	out := make([]*Table, len(tables))
	for start := 0; start < len(tables); start += loadBatch {
		part := tables[start:min(start+loadBatch, len(tables))]
		schemas, names := make([]string, len(part)), make([]string, len(part))
		for i, tm := range part {
			schemas[i], names[i] = tm.Source.Schema, tm.Source.Name
		}
		rows, err := q.Query(ctx, tableSQL, schemas, names)
		if err != nil {
			return nil, fmt.Errorf("load tables: %w", err)
		}
		byOID := make(map[uint32]*Table, len(part))
		oids := make([]uint32, 0, len(part))
		var slot int
		nameAt := func(at int64) (spec.QName, bool) {
			if at < 1 || int(at) > len(part) || out[start+int(at)-1] != nil {
				return spec.QName{}, false
			}
			slot = start + int(at) - 1
			return part[at-1].Source, true
		}
		for rows.Next() {
			t := &Table{}
			ok, err := t.scan(rows, nameAt)
			if err != nil {
				rows.Close()
				return nil, err
			}
			if ok {
				out[slot] = t
				byOID[t.OID] = t
				oids = append(oids, t.OID)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("load tables: %w", err)
		}
		for i, t := range out[start : start+len(part)] {
			if t == nil {
				return nil, fmt.Errorf("table %s does not exist on the source", part[i].Source)
			}
		}
		version := 0
		if len(oids) > 0 {
			version = byOID[oids[0]].ServerVersion
		}
		if rows, err = q.Query(ctx, ForVersion(columnsSQL, version), oids); err == nil {
			err = scanColumns(rows, byOID)
		}
		if err != nil {
			return nil, fmt.Errorf("load columns of %s: %w", someTables(part), err)
		}
		if rows, err = q.Query(ctx, ForVersion(constraintsSQL, version), oids); err == nil {
			err = scanConstraints(rows, byOID)
		}
		if err != nil {
			return nil, fmt.Errorf("load constraints of %s: %w", someTables(part), err)
		}
	}
	return out, nil
}

// someTables names the tables one query reads, for its errors: the first and how many more.
func someTables(tables []spec.TableMap) string {
	if len(tables) == 1 {
		return tables[0].Source.String()
	}
	return fmt.Sprintf("%s and %d more tables", tables[0].Source, len(tables)-1)
}

// loadBatch is how many tables LoadTables reads per query.
const loadBatch = 1000

// batcher is a Querier that can pipeline queries (pgx.Conn, pgx.Tx).
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// ErrSnapshotGone is returned when an exported snapshot can no longer be imported: the
// transaction that exported it (the task's snapshot holder) has ended.
var ErrSnapshotGone = errors.New("the exported snapshot no longer exists (its holder ended)")

// ImportSnapshot makes tx (repeatable read, no statement run yet) read in the exported snapshot;
// "" leaves it alone.
func ImportSnapshot(ctx context.Context, tx pgx.Tx, snapshot string) error {
	if snapshot == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+QuoteLiteral(snapshot)); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "22023" { // invalid snapshot identifier
			return fmt.Errorf("import snapshot %s: %w: %w", snapshot, ErrSnapshotGone, err)
		}
		return fmt.Errorf("import snapshot %s: %w", snapshot, err)
	}
	return nil
}

// QuoteLiteral quotes s as an SQL string literal (standard_conforming_strings on).
func QuoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// AddPartitions completes a selection with the partitions (at every level) of its partitioned
// tables that it does not list: they land in their mapped schema under their own name, with the
// parent's column renames, operations and row filter.
func AddPartitions(ctx context.Context, q Querier, objs []spec.Object, tables []spec.TableMap) ([]spec.TableMap, error) {
	selected := map[spec.QName]bool{}
	for _, t := range tables {
		selected[t.Source] = true
	}
	out := tables
	// Level by level, a query per 1,000 tables of a level (not one per table: thousands of
	// tables without partitions cost a round trip each).
	for from := 0; from < len(out); {
		to := min(len(out), from+1000)
		names := make([]string, to-from)
		for i, t := range out[from:to] {
			names[i] = t.Source.Quoted()
		}
		rows, err := q.Query(ctx, `
SELECT u.i, n.nspname, c.relname
FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS u(name, i)
JOIN pg_catalog.pg_inherits h ON h.inhparent = pg_catalog.to_regclass(u.name)
JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid AND c.relispartition
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
ORDER BY 1, 2, 3`, names)
		if err != nil {
			return nil, fmt.Errorf("list partitions of %s: %w", someTables(out[from:to]), err)
		}
		for rows.Next() {
			var at int64
			var p spec.QName
			if err := rows.Scan(&at, &p.Schema, &p.Name); err != nil {
				rows.Close()
				return nil, err
			}
			if selected[p] || at < 1 || int(at) > to-from {
				continue
			}
			selected[p] = true
			parent := out[from+int(at)-1]
			out = append(out, spec.TableMap{Source: p, Dest: spec.QName{Schema: spec.DestSchema(objs, p.Schema), Name: p.Name},
				Columns: parent.Columns, Types: parent.Types, Operations: parent.Operations, Where: parent.Where})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		from = to
	}
	return out, nil
}

// ParentsFirst orders tables so that every partitioned table comes before its partitions; defs
// are the tables' definitions, in the same order, and are reordered with them.
func ParentsFirst(defs []*Table, tables []spec.TableMap) ([]*Table, []spec.TableMap) {
	depth := func(t *Table) int {
		d := 0
		for p := t.PartitionOf; p != nil && d < 64; d++ {
			var next *spec.QName
			for _, o := range defs {
				if o.Name == *p {
					next = o.PartitionOf
				}
			}
			p = next
		}
		return d
	}
	idx := make([]int, len(defs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return depth(defs[idx[a]]) < depth(defs[idx[b]]) })
	d2 := make([]*Table, len(defs))
	t2 := make([]spec.TableMap, len(tables))
	for i, j := range idx {
		d2[i], t2[i] = defs[j], tables[j]
	}
	return d2, t2
}

// DestColumn is what change apply needs to know of a destination column.
type DestColumn struct {
	ArrayOID  uint32 // the array type of the column's type; 0: none (the column is an array itself)
	Elem      uint32 // the column's type (the array's element type)
	Delimiter byte   // between elements in the array's text form: ',' except for box (';')
	// AlwaysIdentity: GENERATED ALWAYS AS IDENTITY, which an UPDATE cannot set.
	AlwaysIdentity bool
	// PlainEquality: a built-in type (or an enum, or a domain over one) whose = compares values;
	// other types (json, xml, point, box, arrays, composites, extension types) are matched by
	// their text form.
	PlainEquality bool
	// IdentityEquality: = holds only between identical stored values (integers, bool, uuid,
	// dates and times, bytea, enums, text types under a deterministic collation). A row of a
	// table identified by all its values (REPLICA IDENTITY FULL) is matched by = on these, and
	// by text form on the others: under =, jsonb {"a": 25} is {"a": 25.0}, numeric 1.0 is 1.00,
	// an interval of 1 day is 24 hours, and 'A' is 'a' under a case-insensitive collation.
	IdentityEquality bool
	InPrimaryKey     bool
}

// DestColumns returns, for each column of table, what change apply needs to know of it.
func DestColumns(ctx context.Context, q Querier, table spec.QName) (map[string]DestColumn, error) {
	rows, err := q.Query(ctx, `
SELECT a.attname, t.typarray, a.atttypid, t.typdelim::text, a.attidentity = 'a',
       bt.typtype = 'e' OR (bt.typtype = 'b' AND bt.typcategory <> 'A' AND bt.oid < 16384 AND EXISTS (
         SELECT 1 FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_am m ON m.oid = o.opcmethod
         WHERE m.amname = 'btree' AND o.opcdefault AND (o.opcintype = bt.oid OR (bt.typcategory = 'S' AND o.opcintype = 'pg_catalog.text'::pg_catalog.regtype)))),
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND a.attnum = ANY (i.indkey)),
       bt.typtype = 'e' OR bt.oid IN (16, 17, 18, 20, 21, 23, 26, 1082, 1083, 1114, 1184, 2950)
         OR (bt.oid IN (25, 19, 1042, 1043) AND (a.attcollation = 0
             OR (SELECT co.collisdeterministic FROM pg_catalog.pg_collation co WHERE co.oid = a.attcollation)))
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, table.Schema, table.Name)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	out := map[string]DestColumn{}
	var name, delim string
	var col DestColumn
	if _, err := pgx.ForEachRow(rows, []any{&name, &col.ArrayOID, &col.Elem, &delim, &col.AlwaysIdentity, &col.PlainEquality, &col.InPrimaryKey, &col.IdentityEquality}, func() error {
		col.Delimiter = ','
		if len(delim) == 1 {
			col.Delimiter = delim[0]
		}
		out[name] = col
		return nil
	}); err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	return out, nil
}
