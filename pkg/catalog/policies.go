package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/spec"
)

// Policy is a row level security policy of a table.
type Policy struct {
	Table       spec.QName
	Name        string
	Command     string // ALL, SELECT, INSERT, UPDATE, DELETE
	Restrictive bool
	Roles       []string // role names; empty: PUBLIC
	Using       string   // "" = none
	Check       string   // WITH CHECK; "" = none
}

// LoadPolicies reads the policies of tables. Call ClearSearchPath first in the same transaction.
func LoadPolicies(ctx context.Context, q Querier, tables []*Table) ([]Policy, error) {
	oids := make([]uint32, len(tables))
	names := map[uint32]spec.QName{}
	for i, t := range tables {
		oids[i] = t.OID
		names[t.OID] = t.Name
	}
	rows, err := q.Query(ctx, `
SELECT p.polrelid, p.polname::text,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
       NOT p.polpermissive,
       ARRAY(SELECT pg_catalog.pg_get_userbyid(r)::text FROM pg_catalog.unnest(p.polroles) r WHERE r <> 0 ORDER BY 1),
       COALESCE(pg_catalog.pg_get_expr(p.polqual, p.polrelid), ''), COALESCE(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
FROM pg_catalog.pg_policy p WHERE p.polrelid = ANY($1) ORDER BY p.polrelid, p.polname`, oids)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	var out []Policy
	var p Policy
	var rel uint32
	if _, err := pgx.ForEachRow(rows, []any{&rel, &p.Name, &p.Command, &p.Restrictive, &p.Roles, &p.Using, &p.Check}, func() error {
		p.Table = names[rel]
		out = append(out, p)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	return out, nil
}

// Statistics is an extended statistics object on a table.
type Statistics struct {
	Table spec.QName
	Name  spec.QName
	Def   string // CREATE STATISTICS, every name qualified
	// Target is its statistics target when set (ALTER STATISTICS ... SET STATISTICS), else -1.
	Target int
}

// LoadStatistics reads the extended statistics of tables. Call ClearSearchPath first in the
// same transaction: every name is qualified.
func LoadStatistics(ctx context.Context, q Querier, tables []*Table) ([]Statistics, error) {
	bySchema := map[string][]uint32{}
	var schemas []string
	names := map[uint32]spec.QName{}
	for _, t := range tables {
		if _, ok := bySchema[t.Name.Schema]; !ok {
			schemas = append(schemas, t.Name.Schema)
		}
		bySchema[t.Name.Schema] = append(bySchema[t.Name.Schema], t.OID)
		names[t.OID] = t.Name
	}
	var out []Statistics
	for _, schema := range schemas {
		rows, err := q.Query(ctx, `
SELECT s.stxrelid, n.nspname, s.stxname::text, pg_catalog.pg_get_statisticsobjdef(s.oid),
       COALESCE((pg_catalog.to_jsonb(s) ->> 'stxstattarget')::int, -1) -- 13+
FROM pg_catalog.pg_statistic_ext s JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
WHERE s.stxrelid = ANY($1) ORDER BY 2, 3`, bySchema[schema])
		if err != nil {
			return nil, fmt.Errorf("load statistics: %w", err)
		}
		var st Statistics
		var rel uint32
		if _, err := pgx.ForEachRow(rows, []any{&rel, &st.Name.Schema, &st.Name.Name, &st.Def, &st.Target}, func() error {
			st.Table = names[rel]
			out = append(out, st)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("load statistics: %w", err)
		}
	}
	return out, nil
}
