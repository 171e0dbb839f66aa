package catalog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestForVersion(t *testing.T) {
	const sql = `SELECT COALESCE(pg_catalog.to_jsonb(a) ->> 'attgenerated', ''), (pg_catalog.to_jsonb(p) ->> 'proisagg')::bool,
(pg_catalog.to_jsonb(x) ->> 'unknowncol')`
	tests := []struct {
		name string
		num  int
		want string
	}{
		{"unknown version: as written", 0, sql},
		{"10: neither attgenerated nor a removed column's replacement", 100023,
			`SELECT COALESCE(pg_catalog.to_jsonb(a) ->> 'attgenerated', ''), ((p.proisagg)::pg_catalog.text)::bool,
(pg_catalog.to_jsonb(x) ->> 'unknowncol')`},
		{"15: attgenerated read directly, proisagg gone", 150004,
			`SELECT COALESCE((a.attgenerated)::pg_catalog.text, ''), (pg_catalog.to_jsonb(p) ->> 'proisagg')::bool,
(pg_catalog.to_jsonb(x) ->> 'unknowncol')`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, ForVersion(sql, tt.num))
		})
	}
}
