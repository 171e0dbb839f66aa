package spec

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const validYAML = `
name: shop-to-polardb
source:
  host: 127.0.0.1
  database: shop
  user: repl
  password_secret: src-db
destination:
  host: 127.0.0.1
  port: 1521
  database: shop
  user: owner
  password_secret: dst-db
objects:
  - schema: public
    to: app
    tables:
      - name: orders
        to: orders_v2
        columns: {note: remark}
        operations: [insert, update]
  - schema: sales
    exclude_tables: [audit_log]
`

func TestParseAppliesDefaults(t *testing.T) {
	s, err := Parse([]byte(validYAML))
	require.NoError(t, err)
	require.Equal(t, 5432, s.Source.Port)
	require.Equal(t, 1521, s.Destination.Port)
	require.Equal(t, "disable", s.Source.TLS.Mode)
	require.True(t, s.SchemaSync())
	require.True(t, s.FullSync())
	require.True(t, s.IncrementalSync())
	require.Equal(t, ConflictError, s.ConflictMode)
	require.Equal(t, 720, s.Retry.ConnectionMinutes)
	require.Equal(t, 10, s.Retry.OtherMinutes)
	require.Equal(t, 4, s.FullLoad.Parallelism)
	require.Equal(t, 64, s.FullLoad.ChunkMB)
	require.Equal(t, VerifyChecksum, s.Verify.Mode)
	require.Equal(t, 100, s.Verify.SamplePercent)
	require.Equal(t, []string{"insert", "update"}, s.Objects[0].Tables[0].Operations)
	require.Equal(t, "skein_shop_to_polardb", s.SlotName())
	require.False(t, s.ShowRowValues, "row values are redacted unless the spec asks")

	shown, err := Parse([]byte(validYAML + "show_row_values: true\n"))
	require.NoError(t, err)
	require.True(t, shown.ShowRowValues)
}

func TestParseJSONEqualsYAML(t *testing.T) {
	y, err := Parse([]byte(validYAML))
	require.NoError(t, err)
	j, err := Parse([]byte(`{"name":"shop-to-polardb",
 "source":{"host":"127.0.0.1","database":"shop","user":"repl","password_secret":"src-db"},
 "destination":{"host":"127.0.0.1","port":1521,"database":"shop","user":"owner","password_secret":"dst-db"},
 "objects":[{"schema":"public","to":"app","tables":[{"name":"orders","to":"orders_v2","columns":{"note":"remark"},"operations":["insert","update"]}]},
            {"schema":"sales","exclude_tables":["audit_log"]}]}`))
	require.NoError(t, err)
	require.Equal(t, y, j)
}

func TestParseRejectsBadInput(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(string) string
		wantIn []string // each must appear in the error
	}{
		{"missing name", func(s string) string { return strings.Replace(s, "name: shop-to-polardb\n", "", 1) }, []string{"name: required"}},
		{"bad name", func(s string) string { return strings.Replace(s, "shop-to-polardb", "Shop To PolarDB", 1) }, []string{"name:", "a-z 0-9"}},
		{"name of a helper stream", func(s string) string { return strings.Replace(s, "shop-to-polardb", "shop--add", 1) }, []string{"name:", `"shop--add" ends in "--add"`}},
		{"missing source host", func(s string) string {
			return strings.Replace(s, "  host: 127.0.0.1\n  database: shop\n  user: repl", "  database: shop\n  user: repl", 1)
		}, []string{"source.host: required"}},
		{"unknown field", func(s string) string { return s + "colour: blue\n" }, []string{`colour: unknown field: remove it or check its spelling`}},
		{"unknown nested field", func(s string) string { return strings.Replace(s, "  user: repl\n", "  user: repl\n  passwd: x\n", 1) }, []string{`source.passwd: unknown field`}},
		{"bad port type", func(s string) string { return strings.Replace(s, "port: 1521", "port: high", 1) }, []string{"destination.port: expected a whole number, got a string"}},
		{"bad type in a list", func(s string) string { return strings.Replace(s, "to: orders_v2", "to: [orders_v2]", 1) }, []string{"objects[0].tables[0].to: expected a string, got a list"}},
		{"unknown field in a list", func(s string) string { return strings.Replace(s, "to: orders_v2", "too: orders_v2", 1) }, []string{"objects[0].tables[0].too: unknown field"}},
		{"fraction for a number", func(s string) string { return s + "full_load: {parallelism: 2.5}\n" }, []string{"full_load.parallelism: expected a whole number, got the number 2.5"}},
		{"string for a flag", func(s string) string { return s + "sync: {schema: 'no'}\n" }, []string{"sync.schema: expected true or false, got a string"}},
		{"bad port value", func(s string) string { return strings.Replace(s, "port: 1521", "port: 70000", 1) }, []string{"destination.port: 70000"}},
		{"hyphenated source database", func(s string) string {
			return strings.Replace(s, "database: shop\n  user: repl", "database: my-shop\n  user: repl", 1)
		}, []string{"source.database", "'-'"}},
		{"no objects", func(s string) string { return s[:strings.Index(s, "objects:")] }, []string{"objects: required"}},
		{"bad operation", func(s string) string { return strings.Replace(s, "[insert, update]", "[insert, upsert]", 1) }, []string{"objects[0].tables[0].operations[1]", `"upsert"`}},
		{"where breaking out of its parentheses", func(s string) string {
			return strings.Replace(s, "        to: orders_v2\n", "        to: orders_v2\n        where: \"true) OR (true\"\n", 1)
		}, []string{"objects[0].tables[0].where: has a ')' without its '('"}},
		{"where with a second statement", func(s string) string {
			return strings.Replace(s, "        to: orders_v2\n", "        to: orders_v2\n        where: \"true; DROP TABLE x\"\n", 1)
		}, []string{"objects[0].tables[0].where: must be one SQL expression"}},
		{"webhook not a URL", func(s string) string { return s + "alerts: {webhook_url: 'ftp://x'}\n" }, []string{`alerts.webhook_url: not an http:// or https:// URL`}},
		{"webhook and its secret", func(s string) string { return s + "alerts: {webhook_url: 'https://x', webhook_url_secret: hook}\n" }, []string{"alerts.webhook_url_secret: set webhook_url or webhook_url_secret, not both"}},
		{"webhook secret name", func(s string) string { return s + "alerts: {webhook_url_secret: 'a b'}\n" }, []string{`alerts.webhook_url_secret: "a b" is not a secret name`}},
		{"negative latency", func(s string) string { return s + "alerts: {latency_seconds: -1}\n" }, []string{"alerts.latency_seconds: -1 is negative"}},
		{"exclude with tables", func(s string) string {
			return strings.Replace(s, "    to: app\n", "    to: app\n    exclude_tables: [x]\n", 1)
		}, []string{"objects[0].exclude_tables"}},
		{"retry order", func(s string) string { return s + "retry: {connection_minutes: 10, other_minutes: 20}\n" }, []string{"retry.other_minutes: 20 must be less than"}},
		{"explicit zero retry window", func(s string) string { return s + "retry: {other_minutes: 0}\n" }, []string{"retry.other_minutes: 0 is not valid", "leave it out for 10"}},
		{"explicit zero sample", func(s string) string { return s + "verify: {sample_percent: 0}\n" }, []string{"verify.sample_percent: 0 is not valid"}},
		{"explicit zero parallelism and chunk", func(s string) string { return s + "full_load: {parallelism: 0, chunk_mb: 0}\n" }, []string{"full_load.parallelism: 0 is not valid", "full_load.chunk_mb: 0 is not valid"}},
		{"apply lanes range", func(s string) string { return s + "apply: {lanes: 17}\n" }, []string{"apply.lanes: 17 is outside 1..16"}},
		{"explicit zero lanes", func(s string) string { return s + "apply: {lanes: 0}\n" }, []string{"apply.lanes: 0 is not valid", "leave it out for 1"}},
		{"explicit zero port", func(s string) string { return strings.Replace(s, "port: 1521", "port: 0", 1) }, []string{"destination.port: 0 is not valid"}},
		{"empty verify mode", func(s string) string { return s + "verify: {mode: ''}\n" }, []string{"verify.mode: an empty value is not valid"}},
		{"retry range", func(s string) string { return s + "retry: {connection_minutes: 5}\n" }, []string{"retry.connection_minutes: 5 is outside 10..1440"}},
		{"negative throttle", func(s string) string { return s + "throttle: {full: {rows_per_second: -1}}\n" }, []string{"throttle.full.rows_per_second: -1 is negative"}},
		{"tls verify needs a CA", func(s string) string {
			return strings.Replace(s, "  password_secret: src-db\n", "  password_secret: src-db\n  tls: {mode: verify-full}\n", 1)
		}, []string{"source.tls.ca_secret: required with mode verify-full"}},
		{"tls client cert needs its key", func(s string) string {
			return strings.Replace(s, "  password_secret: src-db\n", "  password_secret: src-db\n  tls: {mode: require, cert_secret: c}\n", 1)
		}, []string{"source.tls.cert_secret"}},
		{"a key password without the key", func(s string) string {
			return strings.Replace(s, "  password_secret: src-db\n", "  password_secret: src-db\n  tls: {mode: require, key_password_secret: k}\n", 1)
		}, []string{"source.tls.key_password_secret: names the password of an encrypted client key: set key_secret"}},
		{"tls bad mode", func(s string) string {
			return strings.Replace(s, "  password_secret: src-db\n", "  password_secret: src-db\n  tls: {mode: prefer}\n", 1)
		}, []string{`source.tls.mode: "prefer"`}},
		{"bad verify mode", func(s string) string { return s + "verify: {mode: full}\n" }, []string{"verify.mode"}},
		{"verify schedule range", func(s string) string { return s + "verify: {every_minutes: 10081}\n" }, []string{"verify.every_minutes: 10081 is outside 0..10080"}},
		{"verify schedule without a stream", func(s string) string { return s + "verify: {every_minutes: 60}\nsync: {incremental: false}\n" }, []string{"verify.every_minutes: a schedule runs while the task streams"}},
		{"repair with conflict_mode ignore", func(s string) string { return s + "verify: {repair: true}\nconflict_mode: ignore\n" }, []string{"verify.repair: conflict_mode ignore keeps destination rows"}},
		{"bad conflict mode", func(s string) string { return s + "conflict_mode: overwrite\n" }, []string{`conflict_mode: "overwrite"`}},
		{"unknown precheck id", func(s string) string { return s + "ignore_precheck: [wal_levels]\n" }, []string{"ignore_precheck[0]", "wal_levels"}},
		{"nothing to sync", func(s string) string { return s + "sync: {schema: false, full: false, incremental: false}\n" }, []string{"sync: at least one"}},
		{"two tables to one name", func(s string) string {
			return strings.Replace(s, "        operations: [insert, update]\n", "        operations: [insert, update]\n      - name: orders_old\n        to: orders_v2\n", 1)
		}, []string{"objects[0].tables[1].to", "orders_v2"}},
		{"secret name with a path", func(s string) string {
			return strings.Replace(s, "password_secret: src-db", "password_secret: ../etc/passwd", 1)
		}, []string{"source.password_secret"}},
		{"not yaml", func(string) string { return "name: [unclosed" }, []string{"not valid YAML or JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.edit(validYAML)))
			require.Error(t, err)
			for _, w := range tt.wantIn {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidateListsEveryError(t *testing.T) {
	_, err := Parse([]byte(`{"name": "x", "source": {}, "destination": {}, "objects": []}`))
	require.Error(t, err)
	var errs Errors
	require.ErrorAs(t, err, &errs)
	fields := map[string]bool{}
	for _, e := range errs {
		fields[e.Field] = true
	}
	for _, f := range []string{"source.host", "source.database", "source.user", "destination.host", "destination.database", "destination.user", "objects"} {
		require.True(t, fields[f], "missing error for %s in %v", f, err)
	}
}

func TestResolve(t *testing.T) {
	s, err := Parse([]byte(validYAML))
	require.NoError(t, err)
	existing := map[string][]string{
		"public": {"orders", "customers"},
		"sales":  {"audit_log", "invoices", "refunds"},
	}
	maps, err := Resolve(s.Objects, existing)
	require.NoError(t, err)
	var got []string
	for _, m := range maps {
		got = append(got, m.Source.String()+"->"+m.Dest.String())
	}
	require.Equal(t, []string{"public.orders->app.orders_v2", "sales.invoices->sales.invoices", "sales.refunds->sales.refunds"}, got)
	require.Equal(t, "remark", maps[0].DestColumn("note"))
	require.Equal(t, "id", maps[0].DestColumn("id"))
	require.True(t, maps[0].Allows(OpUpdate))
	require.False(t, maps[0].Allows(OpDelete))
	require.True(t, maps[1].Allows(OpTruncate))
	require.Equal(t, `"app"."orders_v2"`, maps[0].Dest.Quoted())

	_, err = Resolve(s.Objects, map[string][]string{"public": {"customers"}})
	require.Error(t, err)
	require.Contains(t, err.Error(), `table "public"."orders" does not exist`)
	require.Contains(t, err.Error(), `schema "sales" does not exist`)
}

func TestParseObjects(t *testing.T) {
	objs, err := ParseObjects([]byte("- schema: public\n  tables: [{name: a}]\n"))
	require.NoError(t, err)
	require.Len(t, objs, 1)
	objs, err = ParseObjects([]byte("objects:\n  - schema: public\n"))
	require.NoError(t, err)
	require.Len(t, objs, 1)
	_, err = ParseObjects([]byte("- schema: public\n  tables: [{name: a, nme: b}]\n"))
	require.ErrorContains(t, err, `objects[0].tables[0].nme: unknown field`)
	_, err = ParseObjects([]byte(`{"objects": [{"schema": "public", "tables": [{"name": "a", "columns": ["x"]}]}], "extra": 1}`))
	require.ErrorContains(t, err, `objects[0].tables[0].columns: expected a mapping, got a list`)
	require.ErrorContains(t, err, `extra: unknown field`)
}

// TestDecodeJSONAsTheTemporalCLISendsIt: a spec decoded by encoding/json (as the SDK decodes
// SyncTask's input) keeps what does not fit, and Validate names it as Parse does; secrets' text
// never shows.
func TestDecodeJSONAsTheTemporalCLISendsIt(t *testing.T) {
	base := `"name":"t","source":{"host":"h","database":"d","user":"u"},"destination":{"host":"h","database":"d","user":"u"},"objects":[{"schema":"public"}]`
	tests := []struct {
		name, doc string
		want      []string // "" means valid
	}{
		{"valid", "{" + base + "}", nil},
		{"misspelled conflict mode", "{" + base + `,"conflict_mod":"ignore"}`, []string{"conflict_mod: unknown field"}},
		{"port as a string", strings.Replace("{"+base+"}", `"host":"h","database"`, `"host":"h","port":"x","database"`, 1), []string{"source.port: expected a whole number, got a string"}},
		{"explicit zero", "{" + base + `,"full_load":{"parallelism":0}}`, []string{"full_load.parallelism: 0 is not valid"}},
		{"password in a field of the wrong type", "{" + base + `,"sync":{"full":"hunter2"}}`, []string{"sync.full: expected true or false, got a string"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Spec
			require.NoError(t, json.Unmarshal([]byte(tc.doc), &s))
			s.ApplyDefaults()
			err := s.Validate()
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "hunter2")
			require.NotContains(t, err.Error(), "json:", "Skein's words, not the decoder's")
		})
	}
	var s Spec
	require.Error(t, json.Unmarshal([]byte(`{"name":`), &s), "malformed JSON fails the decode itself")
}

func TestCheckExpression(t *testing.T) {
	tests := []struct {
		expr    string
		wantErr string
	}{
		{"region = 'eu'", ""},
		{"note <> 'a;b -- c' AND (x > 1 OR y IS NULL)", ""},
		{`"odd;name" = 'it''s'`, ""},
		{`note = E'back\'slash;'`, ""},
		{"  ", "is empty"},
		{"a = 1; DROP TABLE t", "without ';'"},
		{"a = 1 -- )", "comments"},
		{"a = 1 /* x */", "comments"},
		{"a = $$x$$", "'$'"},
		{"(a = 1", "'(' without"},
		{"a = 1) OR (true", "')' without"},
		{"a = 'open", "unterminated"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			err := checkExpression(tt.expr)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
