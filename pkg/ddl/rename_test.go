package ddl

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMapExprSchemas(t *testing.T) {
	schemas := map[string]string{"app": "app2", "Odd": "o2"}
	tests := []struct{ in, want string }{
		{"app.add_one(1)", `"app2".add_one(1)`},
		{`nextval('app.seq'::regclass)`, `nextval('app.seq'::regclass)`},
		{`'x'::app.mood`, `'x'::"app2".mood`},
		{`"Odd".f(x) + other.f(app)`, `"o2".f(x) + other.f(app)`},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, MapExpr(tt.in, nil, schemas), tt.in)
	}
}

func TestRenameColumns(t *testing.T) {
	renames := map[string]string{"note": "remark", "Mixed Case": "mc", "amount": "total"}
	tests := []struct{ in, want string }{
		{"CHECK ((amount >= (0)::numeric))", `CHECK (("total" >= (0)::numeric))`},
		{"(note IS NOT NULL)", `("remark" IS NOT NULL)`},
		{`lower(("Mixed Case")::text)`, `lower(("mc")::text)`},
		{"(amount * (2)::numeric)", `("total" * (2)::numeric)`},
		{"((note)::text = 'note'::text)", `(("remark")::text = 'note'::text)`},
		{"note(x) + t.note + x::note", "note(x) + t.note + x::note"},
		{"EXCLUDE USING gist (amount WITH =, note WITH <>)", `EXCLUDE USING gist ("total" WITH =, "remark" WITH <>)`},
		{"E'it\\'s note' || note", `E'it\'s note' || "remark"`},
		{"$$note$$ || Note", `$$note$$ || "remark"`},
		{"other > 1", "other > 1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, MapExpr(tt.in, renames, nil))
		})
	}
}
