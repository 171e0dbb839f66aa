package catalog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOrder(t *testing.T) {
	tbl := func(oid uint32) Ref { return Ref{CatalogClass, oid} }
	typ := func(oid uint32) Ref { return Ref{CatalogType, oid} }
	fn := func(oid uint32) Ref { return Ref{CatalogProc, oid} }
	isFunction := func(r Ref) bool { return r.Catalog == CatalogProc }
	for _, tc := range []struct {
		name string
		refs []Ref
		deps map[Ref][]Ref
		want []Ref
		cut  [][2]Ref
	}{
		{"no dependencies: as given", []Ref{typ(1), fn(2), tbl(3)}, nil, []Ref{typ(1), fn(2), tbl(3)}, nil},
		{"a function of a table's row type after the table",
			[]Ref{typ(1), fn(2), tbl(3)}, map[Ref][]Ref{fn(2): {tbl(3)}, tbl(3): {typ(1)}},
			[]Ref{typ(1), tbl(3), fn(2)}, nil},
		{"outside the list and duplicates: ignored",
			[]Ref{fn(2), tbl(3), fn(2)}, map[Ref][]Ref{fn(2): {tbl(3), tbl(3), tbl(99)}},
			[]Ref{tbl(3), fn(2)}, nil},
		{"what becomes ready goes in the given order",
			[]Ref{tbl(5), tbl(1), tbl(2), typ(9)}, map[Ref][]Ref{tbl(5): {typ(9)}, tbl(1): {typ(9)}},
			[]Ref{tbl(2), typ(9), tbl(5), tbl(1)}, nil},
		{"a cycle breaks at a function",
			[]Ref{tbl(1), fn(2), typ(3)}, map[Ref][]Ref{tbl(1): {fn(2)}, fn(2): {typ(3)}, typ(3): {tbl(1)}},
			[]Ref{fn(2), tbl(1), typ(3)}, [][2]Ref{{fn(2), typ(3)}}},
		{"a cycle without a function breaks at its first",
			[]Ref{tbl(1), tbl(2), tbl(3)}, map[Ref][]Ref{tbl(2): {tbl(3)}, tbl(3): {tbl(2)}},
			[]Ref{tbl(1), tbl(2), tbl(3)}, [][2]Ref{{tbl(2), tbl(3)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, cut := Order(tc.refs, tc.deps, isFunction)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.cut, cut)
		})
	}
}
