package ddl

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
)

var mapper = SpecMapper{
	Objects: []spec.Object{{Schema: "shop", To: "mart"}},
	Tables: []spec.TableMap{
		{Source: spec.QName{Schema: "shop", Name: "orders"}, Dest: spec.QName{Schema: "mart", Name: "Orders"}, Columns: map[string]string{"note": "remark"}},
		{Source: spec.QName{Schema: "shop", Name: "customers"}, Dest: spec.QName{Schema: "mart", Name: "clients"}},
	},
}

func TestTypeSQL(t *testing.T) {
	tests := []struct {
		typ  catalog.Type
		want string
	}{
		{catalog.Type{Schema: "pg_catalog", Name: "date", Formatted: "date"}, `pg_catalog."date"`},
		{catalog.Type{Schema: "pg_catalog", Name: "varchar", Modifier: "(20)", Formatted: "character varying(20)"}, `pg_catalog."varchar"(20)`},
		{catalog.Type{Schema: "pg_catalog", Name: "numeric", Modifier: "(10,2)", Formatted: "numeric(10,2)"}, `pg_catalog."numeric"(10,2)`},
		{catalog.Type{Schema: "pg_catalog", Name: "timestamptz", Modifier: "(3)", Formatted: "timestamp(3) with time zone"}, `pg_catalog."timestamptz"(3)`},
		{catalog.Type{Schema: "pg_catalog", Name: "text", Array: true, Formatted: "text[]"}, `pg_catalog."text"[]`},
		{catalog.Type{Schema: "pg_catalog", Name: "interval", Formatted: "interval"}, `pg_catalog."interval"`},
		{catalog.Type{Schema: "pg_catalog", Name: "interval", Formatted: "interval year to month"}, `interval year to month`},
		{catalog.Type{Schema: "shop", Name: "mood", Formatted: "shop.mood"}, `"mart"."mood"`},
		{catalog.Type{Schema: "ext", Name: "Point3", Array: true, Formatted: `ext."Point3"[]`}, `"ext"."Point3"[]`},
	}
	for _, tt := range tests {
		t.Run(tt.typ.Formatted, func(t *testing.T) {
			require.Equal(t, tt.want, TypeSQL(tt.typ, mapper))
		})
	}
}

func TestCreateTableQuotesAndMaps(t *testing.T) {
	seq := spec.QName{Schema: "shop", Name: "orders_id_seq"}
	tbl := &catalog.Table{
		Name: spec.QName{Schema: "shop", Name: "orders"},
		Columns: []catalog.Column{
			{Name: "id", Type: catalog.Type{Schema: "pg_catalog", Name: "int4"}, NotNull: true, Default: "nextval('shop.orders_id_seq'::regclass)", OwnedSequence: &seq},
			{Name: "note", Type: catalog.Type{Schema: "pg_catalog", Name: "text"}, Default: "'x'::text"},
			{Name: "Day", Type: catalog.Type{Schema: "pg_catalog", Name: "date"}},
			{Name: "n", Type: catalog.Type{Schema: "pg_catalog", Name: "int8"}, Identity: "a", NotNull: true},
			{Name: "twice", Type: catalog.Type{Schema: "pg_catalog", Name: "int8"}, Generated: "(n * 2)"},
		},
		Constraints: []catalog.Constraint{{Name: "pos", Kind: "c", Definition: "CHECK ((n > 0))"}},
	}
	got := CreateTable(tbl, mapper.Tables[0], mapper)
	require.Equal(t, `CREATE TABLE IF NOT EXISTS "mart"."Orders" (
  "id" pg_catalog."int4" DEFAULT pg_catalog.nextval('"mart"."orders_id_seq"'::pg_catalog.regclass) NOT NULL,
  "remark" pg_catalog."text" DEFAULT 'x'::text,
  "Day" pg_catalog."date",
  "n" pg_catalog."int8" GENERATED ALWAYS AS IDENTITY NOT NULL,
  "twice" pg_catalog."int8" GENERATED ALWAYS AS ((n * 2)) STORED,
  CONSTRAINT "pos" CHECK ((n > 0))
)`, got)
}

func TestPostDataOrdersAndMaps(t *testing.T) {
	tbl := &catalog.Table{
		Name: spec.QName{Schema: "shop", Name: "orders"},
		Constraints: []catalog.Constraint{
			{Name: "orders_customer_fkey", Kind: "f", Columns: []string{"customer_id"}, RefTable: spec.QName{Schema: "shop", Name: "customers"}, RefColumns: []string{"id"}, OnDelete: "c", OnUpdate: "a", Match: "s"},
			{Name: "orders_other_fkey", Kind: "f", Columns: []string{"x"}, RefTable: spec.QName{Schema: "shop", Name: "unselected"}, RefColumns: []string{"id"}},
			{Name: "orders_pkey", Kind: "p", Columns: []string{"id"}},
			{Name: "orders_note_key", Kind: "u", Columns: []string{"note"}, Deferrable: true, Deferred: true},
		},
	}
	stmts, skipped := PostData(tbl, mapper.Tables[0], mapper)
	var sqls []string
	for _, s := range stmts {
		sqls = append(sqls, s.SQL)
	}
	require.Equal(t, []string{
		`ALTER TABLE "mart"."Orders" ADD CONSTRAINT "orders_pkey" PRIMARY KEY ("id")`,
		`ALTER TABLE "mart"."Orders" ADD CONSTRAINT "orders_note_key" UNIQUE ("remark") DEFERRABLE INITIALLY DEFERRED`,
		`ALTER TABLE "mart"."Orders" ADD CONSTRAINT "orders_customer_fkey" FOREIGN KEY ("customer_id") REFERENCES "mart"."clients" ("id") ON UPDATE NO ACTION ON DELETE CASCADE`,
	}, sqls)
	require.Len(t, skipped, 1)
	require.Contains(t, skipped[0], "shop.unselected, which is not selected")
}

func TestCreateType(t *testing.T) {
	text := catalog.Type{Schema: "pg_catalog", Name: "text"}
	mood := catalog.Type{Schema: "shop", Name: "mood", Array: true}
	tests := []struct {
		ut   catalog.UserType
		want string
	}{
		{catalog.UserType{Name: spec.QName{Schema: "shop", Name: "mood"}, Kind: "e", Labels: []string{"sad", "it's ok"}},
			`CREATE TYPE "mart"."mood" AS ENUM ('sad', 'it''s ok')`},
		{catalog.UserType{Name: spec.QName{Schema: "shop", Name: "Positive"}, Kind: "d", Base: catalog.Type{Schema: "pg_catalog", Name: "numeric", Modifier: "(10,2)"},
			NotNull: true, Default: "1", Checks: []catalog.Check{{Name: "pos", Definition: "CHECK ((VALUE > (0)::numeric))"}}},
			`CREATE DOMAIN "mart"."Positive" AS pg_catalog."numeric"(10,2) DEFAULT 1 NOT NULL CONSTRAINT "pos" CHECK ((VALUE > (0)::numeric))`},
		{catalog.UserType{Name: spec.QName{Schema: "other", Name: "addr"}, Kind: "c", Fields: []catalog.Column{{Name: "street", Type: text}, {Name: "moods", Type: mood}}},
			`CREATE TYPE "other"."addr" AS ("street" pg_catalog."text", "moods" "mart"."mood"[])`},
		{catalog.UserType{Name: spec.QName{Schema: "shop", Name: "fr"}, Kind: "r", Subtype: catalog.Type{Schema: "pg_catalog", Name: "float8"}},
			`CREATE TYPE "mart"."fr" AS RANGE (SUBTYPE = pg_catalog."float8")`},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, CreateType(tt.ut, mapper))
	}
}

func TestCreateIndex(t *testing.T) {
	tm := mapper.Tables[0] // shop.orders -> mart."Orders", note -> remark
	tests := []struct {
		name string
		ix   catalog.Index
		want string
	}{
		{"columns, order, nulls, include, method, unique", catalog.Index{Name: "i1", Unique: true, Method: "btree",
			Keys:    []catalog.IndexKey{{Column: "note", Desc: true}, {Column: "id", NullsFirst: true}, {Column: "x", Desc: true, NullsFirst: true}},
			Include: []string{"note"}},
			`CREATE UNIQUE INDEX IF NOT EXISTS "i1" ON "mart"."Orders" USING "btree" ("remark" DESC NULLS LAST, "id" NULLS FIRST, "x" DESC) INCLUDE ("remark")`},
		{"opclass and predicate without renamed columns", catalog.Index{Name: "i2", Method: "gin",
			Keys: []catalog.IndexKey{{Column: "payload", Opclass: "pg_catalog.jsonb_path_ops"}}, Predicate: "(notes > 0)"},
			`CREATE INDEX IF NOT EXISTS "i2" ON "mart"."Orders" USING "gin" ("payload" pg_catalog.jsonb_path_ops) WHERE (notes > 0)`},
		{"expression and predicate naming a renamed column", catalog.Index{Name: "i3", Method: "btree",
			Keys: []catalog.IndexKey{{Expression: "lower(note)"}}, Predicate: "(note IS NOT NULL)"},
			`CREATE INDEX IF NOT EXISTS "i3" ON "mart"."Orders" USING "btree" ((lower("remark"))) WHERE ("remark" IS NOT NULL)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, CreateIndex(tt.ix, tm, mapper))
		})
	}
}
