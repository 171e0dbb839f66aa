package catalog

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// System catalogs that hold the objects schema sync orders (Ref.Catalog).
const (
	CatalogClass    = "pg_class"    // tables, sequences, views, materialized views
	CatalogType     = "pg_type"     // enums, domains, composite, range and base types
	CatalogProc     = "pg_proc"     // functions, procedures, aggregates
	CatalogOperator = "pg_operator" // operators
	// CatalogConstraint: a table's CHECK created by a statement of its own (a step apart from
	// its table's).
	CatalogConstraint = "pg_constraint"
)

// Ref names one catalog object: the system catalog that holds it and its OID.
type Ref struct {
	Catalog string
	OID     uint32
}

// String is "pg_class:16384".
func (r Ref) String() string { return fmt.Sprintf("%s:%d", r.Catalog, r.OID) }

// dependencySQL finds, in pg_depend, the dependencies between the objects $1/$2 (catalog names
// and OIDs), as pg_dump reads them: an object stands for its parts (a table's column defaults,
// constraints and rules; a domain's constraints) and for the types that stand for it (a table's
// or a composite type's row type, and the array type of every type), so that "a function takes
// a table's row type" or "a view reads an array of a domain" is a dependency on the table or the
// domain. Extension membership ('e') and pins are not dependencies; neither is a sequence's
// OWNED BY (its column's default depends on the sequence: the owner link is made afterwards).
const dependencySQL = `
WITH sel AS (
  SELECT ('pg_catalog.' || u.c)::pg_catalog.regclass::pg_catalog.oid AS classid, u.o AS objid
  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.oid[])) AS u(c, o)
), part AS (
  SELECT s.classid, s.objid, s.classid AS oclass, s.objid AS oobj FROM sel s
  UNION ALL
  SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, ad.oid, s.classid, s.objid
  FROM sel s JOIN pg_catalog.pg_attrdef ad ON s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ad.adrelid = s.objid
  UNION ALL
  SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, co.oid, s.classid, s.objid
  FROM sel s JOIN pg_catalog.pg_constraint co
    ON (s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND co.conrelid = s.objid)
    OR (s.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND co.contypid = s.objid)
  WHERE NOT EXISTS (SELECT 1 FROM sel s2 WHERE s2.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND s2.objid = co.oid)
  UNION ALL
  SELECT 'pg_catalog.pg_rewrite'::pg_catalog.regclass, r.oid, s.classid, s.objid
  FROM sel s JOIN pg_catalog.pg_rewrite r ON s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND r.ev_class = s.objid
  UNION ALL
  SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid, s.classid, s.objid
  FROM sel s JOIN pg_catalog.pg_type t ON s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND t.typrelid = s.objid
  UNION ALL
  SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, t.typrelid, s.classid, s.objid
  FROM sel s JOIN pg_catalog.pg_type t ON s.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = s.objid AND t.typrelid <> 0
), owner AS (
  SELECT * FROM part
  UNION ALL
  SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, a.oid, p.oclass, p.oobj
  FROM part p JOIN pg_catalog.pg_type e ON p.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND e.oid = p.objid
  JOIN pg_catalog.pg_type a ON a.oid = e.typarray
)
SELECT DISTINCT (SELECT relname::pg_catalog.text FROM pg_catalog.pg_class WHERE oid = o1.oclass), o1.oobj,
       (SELECT relname::pg_catalog.text FROM pg_catalog.pg_class WHERE oid = o2.oclass), o2.oobj
FROM pg_catalog.pg_depend d
JOIN owner o1 ON o1.classid = d.classid AND o1.objid = d.objid
JOIN owner o2 ON o2.classid = d.refclassid AND o2.objid = d.refobjid
WHERE d.deptype IN ('n', 'a') AND (o1.oclass, o1.oobj) <> (o2.oclass, o2.oobj)
  AND NOT (d.deptype = 'a' AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_class sq WHERE sq.oid = d.objid AND sq.relkind = 'S'))
ORDER BY 1, 2, 3, 4`

// Dependencies returns, for each of refs, the others of refs it needs created first (see
// dependencySQL for what counts).
func Dependencies(ctx context.Context, q Querier, refs []Ref) (map[Ref][]Ref, error) {
	cats := make([]string, len(refs))
	oids := make([]uint32, len(refs))
	for i, r := range refs {
		cats[i], oids[i] = r.Catalog, r.OID
	}
	rows, err := q.Query(ctx, dependencySQL, cats, oids)
	if err != nil {
		return nil, fmt.Errorf("read the objects' dependencies: %w", err)
	}
	defer rows.Close()
	deps := map[Ref][]Ref{}
	for rows.Next() {
		var from, to Ref
		if err := rows.Scan(&from.Catalog, &from.OID, &to.Catalog, &to.OID); err != nil {
			return nil, fmt.Errorf("read the objects' dependencies: %w", err)
		}
		deps[from] = append(deps[from], to)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the objects' dependencies: %w", err)
	}
	return deps, nil
}

// Order sorts refs so that each comes after what it depends on (deps, as from Dependencies),
// otherwise keeping their given order. A cycle is broken where breakable allows, as pg_dump
// does: a function may come before what its body or signature names (bodies are not checked at
// creation; see createIn), else at the first object of the cycle in the given order. cut lists
// the dependencies the order does not honour.
func Order(refs []Ref, deps map[Ref][]Ref, breakable func(Ref) bool) (ordered []Ref, cut [][2]Ref) {
	index := make(map[Ref]int, len(refs))
	for i, r := range refs {
		if _, dup := index[r]; !dup {
			index[r] = i
		}
	}
	waiting := make([]int, len(refs))   // unmet dependencies of each
	needers := make([][]int, len(refs)) // who waits for each
	for i, r := range refs {
		if index[r] != i {
			continue
		}
		for _, d := range slices.Compact(slices.SortedFunc(slices.Values(deps[r]), func(a, b Ref) int {
			return cmp.Or(cmp.Compare(a.Catalog, b.Catalog), cmp.Compare(a.OID, b.OID))
		})) {
			if j, ok := index[d]; ok && j != i {
				waiting[i]++
				needers[j] = append(needers[j], i)
			}
		}
	}
	done := make([]bool, len(refs))
	var ready []int // kept sorted: the lowest index goes first
	for i := range refs {
		if index[refs[i]] == i && waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	emit := func(i int) {
		done[i] = true
		ordered = append(ordered, refs[i])
		for _, n := range needers[i] {
			if waiting[n]--; waiting[n] == 0 && !done[n] {
				at, _ := slices.BinarySearch(ready, n)
				ready = slices.Insert(ready, at, n)
			}
		}
	}
	for len(ordered) < len(index) {
		if len(ready) > 0 {
			i := ready[0]
			ready = ready[1:]
			if !done[i] {
				emit(i)
			}
			continue
		}
		// A cycle: take the first breakable object left, else the first object left.
		pick := -1
		for i := range refs {
			if index[refs[i]] == i && !done[i] && (pick < 0 || (breakable != nil && breakable(refs[i]) && !breakable(refs[pick]))) {
				pick = i
			}
		}
		for _, d := range deps[refs[pick]] {
			if j, ok := index[d]; ok && !done[j] && j != pick {
				cut = append(cut, [2]Ref{refs[pick], d})
			}
		}
		emit(pick)
	}
	return ordered, cut
}

// ChecksCalling returns which CHECK constraints of tables call one of funcs (OIDs).
func ChecksCalling(ctx context.Context, q Querier, tables, funcs []uint32) (map[uint32]bool, error) {
	rows, err := q.Query(ctx, `
SELECT DISTINCT co.oid FROM pg_catalog.pg_constraint co
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND d.objid = co.oid
  AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
WHERE co.contype = 'c' AND co.conrelid = ANY($1) AND d.refobjid = ANY($2)`, tables, funcs)
	if err != nil {
		return nil, fmt.Errorf("find the checks that call functions: %w", err)
	}
	oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		return nil, fmt.Errorf("find the checks that call functions: %w", err)
	}
	out := map[uint32]bool{}
	for _, o := range oids {
		out[o] = true
	}
	return out, nil
}
