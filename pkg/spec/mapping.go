package spec

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// QName is a schema-qualified object name.
type QName struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
}

// String renders the name for people: schema.name, unquoted.
func (q QName) String() string { return q.Schema + "." + q.Name }

// Quoted renders the name for SQL: both parts always quoted.
func (q QName) Quoted() string { return pgx.Identifier{q.Schema, q.Name}.Sanitize() }

// TableMap is how one selected source table lands on the destination.
type TableMap struct {
	Source  QName             `json:"source"`
	Dest    QName             `json:"dest"`
	Columns map[string]string `json:"columns,omitempty"`
	// Types are the source columns whose destination type is another (Table.ColumnTypes).
	Types      map[string]string `json:"types,omitempty"`
	Operations []string          `json:"operations"`
	// Where is the row filter (an SQL expression over the source table's columns), or "".
	Where string `json:"where,omitempty"`
}

// Rename is a destination table's rename: it followed its source table's (a schema change while
// streaming).
type Rename struct {
	From QName `json:"from"`
	To   QName `json:"to"`
}

// WhereSQL renders the row filter as a condition to AND with others: "(expr)", or "" for none.
func (m TableMap) WhereSQL() string {
	if m.Where == "" {
		return ""
	}
	return "(" + m.Where + ")"
}

// DestColumn maps a source column name to its destination name.
func (m TableMap) DestColumn(col string) string {
	if to, ok := m.Columns[col]; ok {
		return to
	}
	return col
}

// DestType is the destination type a source column is mapped to ("" when it keeps its type).
func (m TableMap) DestType(col string) string { return m.Types[col] }

// Allows reports whether operation op (OpInsert, ...) is synchronized for this table.
func (m TableMap) Allows(op string) bool { return slices.Contains(m.Operations, op) }

// DestSchema maps a selected source schema to its destination name.
func DestSchema(objs []Object, schema string) string {
	for _, o := range objs {
		if o.Schema == schema && o.To != "" {
			return o.To
		}
	}
	return schema
}

// Resolve expands the selection against the tables that exist on the source (schema -> table
// names). It fails naming every selected schema or table that does not exist, and returns the
// tables that do exist with the error (the precheck goes on checking them).
func Resolve(objs []Object, sourceTables map[string][]string) ([]TableMap, error) {
	var out []TableMap
	var missing Errors
	for i, o := range objs {
		existing, ok := sourceTables[o.Schema]
		if !ok {
			missing.add(fmt.Sprintf("objects[%d].schema", i), "schema %q does not exist on the source", o.Schema)
			continue
		}
		destSchema := DestSchema(objs, o.Schema)
		if len(o.Tables) == 0 {
			for _, name := range existing {
				if slices.Contains(o.ExcludeTables, name) {
					continue
				}
				out = append(out, TableMap{
					Source:     QName{o.Schema, name},
					Dest:       QName{destSchema, name},
					Operations: append([]string(nil), AllOperations...),
				})
			}
			continue
		}
		for j, t := range o.Tables {
			if !slices.Contains(existing, t.Name) {
				missing.add(fmt.Sprintf("objects[%d].tables[%d].name", i, j), "table %q.%q does not exist on the source", o.Schema, t.Name)
				continue
			}
			dest := t.Name
			if t.To != "" {
				dest = t.To
			}
			ops := t.Operations
			if len(ops) == 0 {
				ops = AllOperations
			}
			out = append(out, TableMap{
				Source:     QName{o.Schema, t.Name},
				Dest:       QName{destSchema, dest},
				Columns:    t.Columns,
				Types:      t.ColumnTypes,
				Operations: append([]string(nil), ops...),
				Where:      strings.TrimSpace(t.Where),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source.String() < out[j].Source.String() })
	return out, missing.orNil()
}
