package catalog

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestLoadTablesBySet: the set-based read gives every table its own columns and constraints, in
// the order asked, across query batches, the same as reading each alone; a missing table is named.
func TestLoadTablesBySet(t *testing.T) {
	ctx := context.Background()
	conn := server(t)
	testharness.Exec(t, conn, `CREATE SCHEMA app`,
		`CREATE TABLE app.parent (id int, at date NOT NULL, g int GENERATED ALWAYS AS (id * 2) STORED, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`,
		`CREATE TABLE app.p2024 PARTITION OF app.parent FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
		`CREATE TABLE app."Mixed Case" (k text PRIMARY KEY, ref int, n numeric(10,2) DEFAULT 1.5 CHECK (n > 0), UNIQUE (ref))`,
		`CREATE TABLE app.child (id serial PRIMARY KEY, m text REFERENCES app."Mixed Case" (k))`)
	for i := 0; i < 1200; i++ { // past one query batch
		testharness.Exec(t, conn, `CREATE TABLE app.t`+strconv.Itoa(i)+` (id int PRIMARY KEY, v text)`)
	}
	var tables []spec.TableMap
	for _, n := range []string{"child", "Mixed Case", "parent", "p2024"} {
		tables = append(tables, spec.TableMap{Source: spec.QName{Schema: "app", Name: n}})
	}
	for i := 1199; i >= 0; i-- {
		tables = append(tables, spec.TableMap{Source: spec.QName{Schema: "app", Name: "t" + strconv.Itoa(i)}})
	}
	tx, err := BeginRead(ctx, conn, "")
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	defs, err := LoadTables(ctx, tx, tables)
	require.NoError(t, err)
	require.Len(t, defs, len(tables))
	for i, d := range defs {
		require.Equal(t, tables[i].Source, d.Name)
		alone, err := LoadTable(ctx, tx, tables[i].Source)
		require.NoError(t, err)
		require.Equal(t, alone, d, "table %s", d.Name)
	}
	require.Equal(t, []string{"id", "m"}, columnNames(defs[0]))
	require.Equal(t, "f", defs[0].Constraints[1].Kind, "the foreign key, after the key")
	require.Equal(t, []string{"k", "ref", "n"}, columnNames(defs[1]))
	require.Equal(t, "1.5", defs[1].Columns[2].Default)
	require.Equal(t, "heap", defs[1].AccessMethod)
	require.Len(t, defs[1].Constraints, 3)
	require.Equal(t, "RANGE (at)", defs[2].PartitionKey)
	require.Equal(t, "(id * 2)", defs[2].Columns[2].Generated)
	require.Equal(t, &spec.QName{Schema: "app", Name: "parent"}, defs[3].PartitionOf)
	require.Equal(t, []string{"id", "v"}, columnNames(defs[4]))

	_, err = LoadTables(ctx, tx, append(tables[:2:2], spec.TableMap{Source: spec.QName{Schema: "app", Name: "gone"}}))
	require.ErrorContains(t, err, "table app.gone does not exist on the source")
}

// TestAddPartitionsByLevel: every level of partitions joins the selection, after the tables
// asked for, each level in its parents' order, with its parent's mapping.
func TestAddPartitionsByLevel(t *testing.T) {
	ctx := context.Background()
	conn := server(t)
	testharness.Exec(t, conn, `CREATE SCHEMA app`, `CREATE SCHEMA parts`,
		`CREATE TABLE app.a (id int, at date) PARTITION BY RANGE (at)`,
		`CREATE TABLE parts.a_2024 PARTITION OF app.a FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY HASH (id)`,
		`CREATE TABLE parts.a_2024_h0 PARTITION OF parts.a_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 0)`,
		`CREATE TABLE parts.a_2024_h1 PARTITION OF parts.a_2024 FOR VALUES WITH (MODULUS 2, REMAINDER 1)`,
		`CREATE TABLE app.a_2023 PARTITION OF app.a FOR VALUES FROM ('2023-01-01') TO ('2024-01-01')`,
		`CREATE TABLE app.b (id int) PARTITION BY LIST (id)`,
		`CREATE TABLE app.b1 PARTITION OF app.b FOR VALUES IN (1)`,
		`CREATE TABLE app.plain (id int)`)
	q := func(schema, name string) spec.QName { return spec.QName{Schema: schema, Name: name} }
	objs := []spec.Object{{Schema: "app", To: "dst"}}
	tables := []spec.TableMap{
		{Source: q("app", "a"), Dest: q("dst", "a"), Operations: []string{"insert"}},
		{Source: q("app", "plain"), Dest: q("dst", "plain")},
		{Source: q("app", "b"), Dest: q("dst", "b")},
		{Source: q("app", "b1"), Dest: q("dst", "b1_own")}, // listed: kept as listed
	}
	got, err := AddPartitions(ctx, conn, objs, tables)
	require.NoError(t, err)
	var names []string
	for _, tm := range got {
		names = append(names, tm.Source.String()+"->"+tm.Dest.String())
	}
	require.Equal(t, []string{"app.a->dst.a", "app.plain->dst.plain", "app.b->dst.b", "app.b1->dst.b1_own",
		"app.a_2023->dst.a_2023", "parts.a_2024->parts.a_2024", "parts.a_2024_h0->parts.a_2024_h0", "parts.a_2024_h1->parts.a_2024_h1"}, names)
	require.Equal(t, []string{"insert"}, got[7].Operations, "a partition's partition has the top table's operations")
}

func columnNames(t *Table) []string {
	var out []string
	for _, c := range t.Columns {
		out = append(out, c.Name)
	}
	return out
}

// server starts a PostgreSQL server for the test and connects to it.
func server(t *testing.T) *pgx.Conn {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a PostgreSQL server")
	}
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{})
	conn, err := pg.Connect(ctx, "postgres")
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}
