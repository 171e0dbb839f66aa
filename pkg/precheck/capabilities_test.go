package precheck

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
)

// TestCaseCollisions: destination names (after mapping) that differ only in case are grouped, for
// tables and for the columns of each table; a mapping that parts them, or names equal in case,
// are not.
func TestCaseCollisions(t *testing.T) {
	tm := func(schema, name, to string, cols map[string]string) spec.TableMap {
		return spec.TableMap{Source: spec.QName{Schema: schema, Name: name}, Dest: spec.QName{Schema: schema, Name: to}, Columns: cols}
	}
	def := func(cols ...string) *catalog.Table {
		t := &catalog.Table{}
		for _, c := range cols {
			t.Columns = append(t.Columns, catalog.Column{Name: c})
		}
		return t
	}
	tests := []struct {
		name   string
		tables []spec.TableMap
		defs   []*catalog.Table
		want   [][]string
	}{
		{"tables", []spec.TableMap{tm("s", "Orders", "Orders", nil), tm("s", "orders", "orders", nil)}, []*catalog.Table{def("id"), def("id")},
			[][]string{{`table "s"."Orders"`, `table "s"."orders"`}}},
		{"a mapping parts them", []spec.TableMap{tm("s", "Orders", "orders_upper", nil), tm("s", "orders", "orders", nil)}, []*catalog.Table{def("id"), def("id")}, nil},
		{"other schemas", []spec.TableMap{tm("a", "t", "t", nil), tm("b", "T", "T", nil)}, []*catalog.Table{def("id"), def("id")}, nil},
		{"columns", []spec.TableMap{tm("s", "t", "t", nil)}, []*catalog.Table{def("id", "Note", "note")},
			[][]string{{`column "s"."t"."Note"`, `column "s"."t"."note"`}}},
		{"a column mapping makes one", []spec.TableMap{tm("s", "t", "t", map[string]string{"a": "NOTE"})}, []*catalog.Table{def("a", "note")},
			[][]string{{`column "s"."t"."NOTE"`, `column "s"."t"."note"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, caseCollisions(tt.tables, tt.defs))
		})
	}
}
