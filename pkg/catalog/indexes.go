package catalog

import (
	"context"
	"fmt"

	"github.com/skein-dts/skein/pkg/spec"
)

// Index is a secondary index: one that no primary key, unique or exclusion constraint owns (those
// come with their constraint).
type Index struct {
	Name      string
	Unique    bool
	Method    string // access method: btree, hash, gin, gist, brin, ...
	Keys      []IndexKey
	Include   []string // INCLUDE columns
	Predicate string   // partial index condition; "" = none
	Options   []string // storage parameters (WITH), e.g. "fillfactor=70"
	// NullsNotDistinct: a unique index whose NULLs are equal (15+).
	NullsNotDistinct bool
	// Only: a partitioned table's index not valid on the source (not every partition's index is
	// attached to it): created ON ONLY the table, its partitions' indexes attached one by one.
	Only bool
	// AttachTo is the index this one is attached to when that one is Only; nil otherwise (a
	// valid parent index makes its partitions' indexes itself).
	AttachTo *spec.QName
}

// IndexKey is one key of an index: a column or an expression.
type IndexKey struct {
	Column     string // set for a column key
	Expression string // set for an expression key, as the server prints it
	Opclass    string // quoted, qualified operator class when not the default or with options; "" otherwise
	// OpclassOptions are the operator class's parameters, e.g. "false_positive_rate=0.05".
	OpclassOptions []string
	Collation      string // quoted, qualified collation when not the key's own; "" otherwise
	Desc           bool
	NullsFirst     bool
}

// LoadIndexes reads t's secondary indexes. Call ClearSearchPath first in the same transaction.
func LoadIndexes(ctx context.Context, q Querier, t *Table) ([]Index, error) {
	rows, err := q.Query(ctx, ForVersion(`
SELECT i.indexrelid, ic.relname::text, i.indisunique, am.amname::text, COALESCE((pg_catalog.to_jsonb(i) ->> 'indnkeyatts')::int, i.indnatts)::pg_catalog.int2, -- 11+
       COALESCE(pg_catalog.pg_get_expr(i.indpred, i.indrelid), ''), COALESCE(ic.reloptions, '{}'),
       COALESCE((pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct')::bool, false), -- 15+
       NOT i.indisvalid,
       (SELECT pn.nspname FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class pc ON pc.oid = h.inhparent
        JOIN pg_catalog.pg_index pi ON pi.indexrelid = pc.oid JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
        WHERE h.inhrelid = i.indexrelid AND NOT pi.indisvalid),
       (SELECT pc.relname FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class pc ON pc.oid = h.inhparent
        JOIN pg_catalog.pg_index pi ON pi.indexrelid = pc.oid
        WHERE h.inhrelid = i.indexrelid AND NOT pi.indisvalid)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_am am ON am.oid = ic.relam
WHERE i.indrelid = $1 AND (i.indisvalid OR ic.relkind = 'I')
  -- conrelid first: pg_constraint has no index on conindid, and a scan of it per index grows with
  -- the database (a minute for 10,000 tables)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conrelid = i.indrelid AND c.conindid = i.indexrelid
                  AND c.contype IN ('p', 'u', 'x'))
ORDER BY ic.relname`, t.ServerVersion), t.OID)
	if err != nil {
		return nil, fmt.Errorf("load indexes of %s: %w", t.Name, err)
	}
	type head struct {
		oid     uint32
		ix      Index
		keyAtts int
	}
	var heads []head
	for rows.Next() {
		var h head
		var attachSchema, attachName *string
		if err := rows.Scan(&h.oid, &h.ix.Name, &h.ix.Unique, &h.ix.Method, &h.keyAtts, &h.ix.Predicate, &h.ix.Options, &h.ix.NullsNotDistinct,
			&h.ix.Only, &attachSchema, &attachName); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load indexes of %s: %w", t.Name, err)
		}
		if attachSchema != nil && attachName != nil {
			h.ix.AttachTo = &spec.QName{Schema: *attachSchema, Name: *attachName}
		}
		heads = append(heads, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Index, 0, len(heads))
	for _, h := range heads {
		krows, err := q.Query(ctx, ForVersion(`
SELECT k, COALESCE(a.attname::text, ''), pg_catalog.pg_get_indexdef(i.indexrelid, k, true),
       COALESCE(CASE WHEN NOT opc.opcdefault OR ia.attoptions IS NOT NULL THEN pg_catalog.quote_ident(opcn.nspname) || '.' || pg_catalog.quote_ident(opc.opcname) END, ''),
       COALESCE(i.indoption[k - 1], 0)::int, COALESCE(ia.attoptions, '{}'),
       COALESCE((SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
                 FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
                 WHERE co.oid = i.indcollation[k - 1] AND co.oid <> COALESCE(a.attcollation, kt.typcollation)), '')
FROM pg_catalog.pg_index i
CROSS JOIN pg_catalog.generate_series(1, i.indnatts) k
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1] AND i.indkey[k - 1] <> 0
LEFT JOIN pg_catalog.pg_attribute ia ON ia.attrelid = i.indexrelid AND ia.attnum = k
LEFT JOIN pg_catalog.pg_type kt ON kt.oid = ia.atttypid
LEFT JOIN pg_catalog.pg_opclass opc ON k <= COALESCE((pg_catalog.to_jsonb(i) ->> 'indnkeyatts')::int, i.indnatts) AND opc.oid = i.indclass[k - 1]
LEFT JOIN pg_catalog.pg_namespace opcn ON opcn.oid = opc.opcnamespace
WHERE i.indexrelid = $1
ORDER BY k`, t.ServerVersion), h.oid)
		if err != nil {
			return nil, fmt.Errorf("load index %s: %w", h.ix.Name, err)
		}
		for krows.Next() {
			var k, option int
			var col, def, opclass, collation string
			var opts []string
			if err := krows.Scan(&k, &col, &def, &opclass, &option, &opts, &collation); err != nil {
				krows.Close()
				return nil, fmt.Errorf("load index %s: %w", h.ix.Name, err)
			}
			if k > h.keyAtts {
				h.ix.Include = append(h.ix.Include, col)
				continue
			}
			key := IndexKey{Column: col, Opclass: opclass, OpclassOptions: opts, Collation: collation, Desc: option&1 != 0, NullsFirst: option&2 != 0}
			if col == "" {
				key.Expression = def
			}
			h.ix.Keys = append(h.ix.Keys, key)
		}
		krows.Close()
		out = append(out, h.ix)
	}
	return out, nil
}
