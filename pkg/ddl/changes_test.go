package ddl

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/spec"
)

// TestFollowRename: a destination table follows its source table's RENAME and SET SCHEMA within
// the selection unless its mapping gave it a name of its own; a move out of the selection is
// named, not followed.
func TestFollowRename(t *testing.T) {
	objects := []spec.Object{{Schema: "app", To: "mart"}, {Schema: "crm", Tables: []spec.Table{{Name: "people"}}}}
	m := SpecMapper{Objects: objects}
	selected := func(schema string) bool { return schema == "app" || schema == "crm" }
	q := func(schema, name string) spec.QName { return spec.QName{Schema: schema, Name: name} }
	tests := []struct {
		name          string
		before, after spec.QName
		dest          spec.QName // before the change
		wantStmts     []string
		wantDest      spec.QName
		wantNote      string
	}{
		{"rename follows", q("app", "old"), q("app", "new"), q("mart", "old"),
			[]string{`ALTER TABLE "mart"."old" RENAME TO "new"`}, q("mart", "new"), ""},
		{"a mapped name is kept", q("app", "old"), q("app", "new"), q("mart", "mine"), nil, q("mart", "mine"), ""},
		{"a name Oracle mode would fold is quoted", q("app", "old"), q("app", "Mixed Case"), q("mart", "old"),
			[]string{`ALTER TABLE "mart"."old" RENAME TO "Mixed Case"`}, q("mart", "Mixed Case"), ""},
		{"set schema within the selection", q("app", "t"), q("crm", "t"), q("mart", "t"),
			[]string{`ALTER TABLE "mart"."t" SET SCHEMA "crm"`}, q("crm", "t"), ""},
		{"set schema and rename", q("crm", "t"), q("app", "t2"), q("crm", "t"),
			[]string{`ALTER TABLE "crm"."t" SET SCHEMA "mart"`, `ALTER TABLE "mart"."t" RENAME TO "t2"`}, q("mart", "t2"), ""},
		{"set schema out of the selection", q("app", "t"), q("elsewhere", "t"), q("mart", "t"), nil, q("mart", "t"),
			`table app.t moved to schema elsewhere, which the task does not select: its destination stays mart.t`},
		{"no rename", q("app", "t"), q("app", "t"), q("mart", "t"), nil, q("mart", "t"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := &ddlcapture.Table{Schema: tt.before.Schema, Name: tt.before.Name}
			after := &ddlcapture.Table{Schema: tt.after.Schema, Name: tt.after.Name}
			tm := spec.TableMap{Source: tt.after, Dest: tt.dest}
			stmts, out, note := FollowRename(before, after, tm, m, selected)
			require.Equal(t, tt.wantStmts, stmts)
			require.Equal(t, tt.wantDest, out.Dest)
			require.Equal(t, tt.after, out.Source)
			require.Equal(t, tt.wantNote, note)
		})
	}
}
