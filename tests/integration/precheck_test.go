package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap/zaptest"
	"sigs.k8s.io/yaml"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/precheck"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

const precheckSource = `
CREATE TABLE public.parent (id int PRIMARY KEY, name text);
CREATE TABLE public.child (id int PRIMARY KEY, parent_id int REFERENCES public.parent (id));
CREATE ROLE weak LOGIN;
CREATE ROLE repl_owner LOGIN REPLICATION;
CREATE SCHEMA owned AUTHORIZATION repl_owner;
SET ROLE repl_owner;
CREATE TABLE owned.t (id int PRIMARY KEY);
RESET ROLE;
CREATE SCHEMA lab;
`

const precheckDest = `
CREATE ROLE dweak LOGIN;
CREATE ROLE dcreator LOGIN;
GRANT CREATE ON DATABASE target TO dcreator;
GRANT SET ON PARAMETER session_replication_role TO dcreator;
`

func itemByID(items []precheck.Item, id string) (precheck.Item, bool) {
	for _, it := range items {
		if it.ID == id {
			return it, true
		}
	}
	return precheck.Item{}, false
}

// TestPrecheckItems checks every item against servers set up to pass it, then against servers set
// up to fail it, one item at a time.
func TestPrecheckItems(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG := testharness.NewPostgres(t, testharness.PostgresOptions{Logical: true})
	dstPG := testharness.NewPostgres(t, testharness.PostgresOptions{})
	tightPG := testharness.NewPostgres(t, testharness.PostgresOptions{Logical: true, Settings: []string{"max_replication_slots = 1", "max_wal_senders = 1"}})
	plainPG := testharness.NewPostgres(t, testharness.PostgresOptions{Logical: false})
	require.NoError(t, srcPG.CreateDatabase(ctx, "shop"))
	require.NoError(t, dstPG.CreateDatabase(ctx, "target"))
	src, err := srcPG.Connect(ctx, "shop")
	require.NoError(t, err)
	defer src.Close(ctx)
	dst, err := dstPG.Connect(ctx, "target")
	require.NoError(t, err)
	defer dst.Close(ctx)
	testharness.Exec(t, src, precheckSource)
	testharness.Exec(t, dst, precheckDest)

	base := func() spec.Spec {
		s := spec.Spec{
			Name: "pre", Source: srcPG.Endpoint("shop"), Destination: dstPG.Endpoint("target"),
			Objects: []spec.Object{{Schema: "public"}},
		}
		s.ApplyDefaults()
		return s
	}
	run := func(s spec.Spec, opts precheck.Options) []precheck.Item {
		items, _ := precheck.Run(ctx, dbconn.Opener{}, s, opts)
		return items
	}

	t.Run("the precheck checks again while a server restarts", func(t *testing.T) {
		// The destination is not there at first (connections are closed at once, as by a server
		// shutting down), and is back 3 s later.
		deadPort, _ := testharness.FreePort()
		proxy, err := testharness.NewProxyTo(deadPort)
		require.NoError(t, err)
		defer proxy.Close()
		s := base()
		s.Destination.Port = proxy.Port
		go func() {
			time.Sleep(3 * time.Second)
			proxy.SetTarget(fmt.Sprintf("127.0.0.1:%d", dstPG.Port))
		}()
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(&activities.Activities{Log: zaptest.NewLogger(t), PrecheckOptions: precheck.Options{Settle: 10 * time.Second}})
		start := time.Now()
		val, err := env.ExecuteActivity((&activities.Activities{}).Precheck, s)
		require.NoError(t, err)
		var items []precheck.Item
		require.NoError(t, val.Get(&items))
		require.Empty(t, api.Failed(items, nil), "every item passes once the server is back")
		require.Greater(t, time.Since(start), 3*time.Second, "it waited for the server")

		// A server that stays away fails the precheck after the settle time, naming it.
		s.Destination.Port = deadPort
		val, err = env.ExecuteActivity((&activities.Activities{}).Precheck, s)
		require.NoError(t, err)
		require.NoError(t, val.Get(&items))
		it, _ := itemByID(items, "dest_connect")
		require.False(t, it.Passed)
	})

	t.Run("a server that cannot be reached is transient, a refusal is not", func(t *testing.T) {
		_, transient := precheck.Run(ctx, dbconn.Opener{}, base(), precheck.Options{})
		require.False(t, transient, "everything reached")
		s := base()
		s.Source.Port, _ = testharness.FreePort()
		_, transient = precheck.Run(ctx, dbconn.Opener{}, s, precheck.Options{})
		require.True(t, transient, "nothing listens on the source's port")
		s = base()
		s.Destination.Database = "no_such_db"
		_, transient = precheck.Run(ctx, dbconn.Opener{}, s, precheck.Options{})
		require.False(t, transient, "a database that does not exist stays so")
	})

	t.Run("everything passes", func(t *testing.T) {
		items := run(base(), precheck.Options{})
		for _, id := range spec.PrecheckIDs {
			it, ok := itemByID(items, id)
			require.True(t, ok, "item %s missing", id)
			require.True(t, it.Passed, "%s: %s", id, it.Detail)
		}
		require.Empty(t, api.Failed(items, nil))
		size, _ := itemByID(items, "source_size")
		require.Equal(t, precheck.Info, size.Level)
		require.Contains(t, size.Detail, "KiB")
		compat, _ := itemByID(items, "dest_compatibility")
		require.Contains(t, compat.Detail, "PostgreSQL 15")
	})

	t.Run("an Oracle-mode destination is pinned to PostgreSQL semantics", func(t *testing.T) {
		ivory := testharness.NewIvorySQL(t, testharness.PostgresOptions{})
		require.NoError(t, ivory.CreateDatabase(ctx, "target"))
		s := base()
		s.Destination = ivory.Endpoint("target")
		require.Equal(t, ivory.OraclePort, s.Destination.Port)
		items := run(s, precheck.Options{})
		require.Empty(t, api.Failed(items, nil), "%+v", items)
		compat, _ := itemByID(items, "dest_compatibility")
		require.True(t, compat.Passed)
		for _, want := range []string{"IvorySQL", "IvorySQL 5.4", "sessions start in oracle mode", "ivorysql.identifier_case_switch = interchange",
			"ivorysql.enable_emptystring_to_NULL = on", "Skein pins per session: ivorysql.compatible_mode = pg",
			"a DDL statement does not commit the open transaction: yes", "a failed statement aborts its transaction: yes"} {
			require.Contains(t, compat.Detail, want)
		}
	})

	t.Run("dest_capabilities: what the destination cannot hold is named before anything is created", func(t *testing.T) {
		testharness.Exec(t, src, `CREATE SCHEMA cap;
CREATE TABLE cap.docs (id int PRIMARY KEY, x xml);
CREATE TABLE cap.names (id int PRIMARY KEY, n text COLLATE "und-x-icu");
CREATE TABLE cap."Orders" (id int PRIMARY KEY);
CREATE TABLE cap.orders (id int PRIMARY KEY, "Note" text, note text)`)
		ivory := testharness.NewIvorySQL(t, testharness.PostgresOptions{})
		require.NoError(t, ivory.CreateDatabase(ctx, "target"))
		s := base()
		s.Objects = []spec.Object{{Schema: "cap"}}
		s.Destination = ivory.Endpoint("target")
		it, _ := itemByID(run(s, precheck.Options{}), "dest_capabilities")
		require.False(t, it.Passed, "%+v", it)
		require.Equal(t, precheck.Error, it.Level)
		require.Contains(t, it.Detail, "xml values cannot be stored on the destination")
		require.Contains(t, it.Detail, "cap.docs.x")
		require.Contains(t, it.Detail, `collation pg_catalog."und-x-icu" (used by cap.names.n) does not exist`)
		require.NotContains(t, it.Detail, "differ only in case", "IvorySQL keeps the names apart in a pinned session")
		ivoryConn, err := ivory.Connect(ctx, "target")
		require.NoError(t, err)
		defer ivoryConn.Close(ctx)
		var schemas int
		require.NoError(t, ivoryConn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname IN ('cap', 'skein')`).Scan(&schemas))
		require.Zero(t, schemas, "nothing was created")

		// The xml column mapped to text fits; mapped to a type its values cannot be cast to, it is
		// refused by the source, naming the mapping.
		s.Objects = []spec.Object{{Schema: "cap", Tables: []spec.Table{{Name: "docs", ColumnTypes: map[string]string{"x": "text"}}}}}
		it, _ = itemByID(run(s, precheck.Options{}), "dest_capabilities")
		require.True(t, it.Passed, "%+v", it)
		s.Objects[0].Tables[0].ColumnTypes = map[string]string{"x": "integer", "nope": "text"}
		it, _ = itemByID(run(s, precheck.Options{}), "dest_capabilities")
		require.False(t, it.Passed)
		require.Contains(t, it.Detail, "column_types maps cap.docs.x to integer, to which the source cannot cast it (cannot cast type xml to integer)")
		require.Contains(t, it.Detail, "column_types names column cap.docs.nope, which does not exist")

		// Excluding those two, what is left passes, noting the names that differ only in case.
		s.Objects = []spec.Object{{Schema: "cap", ExcludeTables: []string{"docs", "names"}}}
		it, _ = itemByID(run(s, precheck.Options{}), "dest_capabilities")
		require.True(t, it.Passed, "%+v", it)
		require.Contains(t, it.Detail, "2 group(s) of names differ only in case; the destination keeps them apart")

		// PostgreSQL 15 (with libxml and ICU) holds all of it.
		s = base()
		s.Objects = []spec.Object{{Schema: "cap"}}
		it, _ = itemByID(run(s, precheck.Options{}), "dest_capabilities")
		require.True(t, it.Passed, "%+v", it)
	})

	t.Run("dest_libraries: a C function whose library the destination cannot load is named", func(t *testing.T) {
		// A contrib module of the source's server, by its absolute path (as a restore from
		// another machine leaves it): PostgreSQL 15 loads it, IvorySQL (18) cannot.
		var libdir string
		require.NoError(t, src.QueryRow(ctx, `SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'`).Scan(&libdir))
		testharness.Exec(t, src, fmt.Sprintf(`CREATE SCHEMA clib;
CREATE TABLE clib.t (id int PRIMARY KEY);
CREATE FUNCTION clib.ai() RETURNS trigger AS '%[1]s/autoinc.so', 'autoinc' LANGUAGE c;
CREATE FUNCTION clib.ai2() RETURNS trigger AS '%[1]s/autoinc.so', 'autoinc' LANGUAGE c`, libdir))
		s := base()
		s.Objects = []spec.Object{{Schema: "clib"}}
		it, _ := itemByID(run(s, precheck.Options{}), "dest_libraries")
		require.True(t, it.Passed, "%+v", it)
		ivory := testharness.NewIvorySQL(t, testharness.PostgresOptions{})
		require.NoError(t, ivory.CreateDatabase(ctx, "target"))
		s.Destination = ivory.Endpoint("target")
		it, _ = itemByID(run(s, precheck.Options{}), "dest_libraries")
		require.False(t, it.Passed, "%+v", it)
		require.Equal(t, precheck.Warning, it.Level, "accepted with ignore_precheck: the schema step reports them")
		require.Contains(t, it.Detail, fmt.Sprintf("C function(s) clib.ai(), clib.ai2() use library %s/autoinc.so, which the destination cannot load", libdir))
	})

	t.Run("a full-only task skips the replication items", func(t *testing.T) {
		s := base()
		f := false
		s.Sync.Incremental = &f
		s.Source = plainPG.Endpoint("postgres")
		s.Objects = []spec.Object{{Schema: "public"}}
		items := run(s, precheck.Options{})
		for _, id := range []string{"wal_level", "replication_slots", "wal_senders", "replica_role_privilege", "primary_keys"} {
			_, ok := itemByID(items, id)
			require.False(t, ok, "%s should not be checked for a full-only task", id)
		}
	})

	type scenario struct {
		id     string
		level  string
		setup  func(t *testing.T, s *spec.Spec) (cleanup func())
		inFix  string // the fix mentions this
		inText string // the detail mentions this
	}
	none := func() {}
	scenarios := []scenario{
		{id: "source_connect", level: precheck.Error, inText: "connect", setup: func(t *testing.T, s *spec.Spec) func() {
			port, _ := testharness.FreePort()
			s.Source.Port = port
			return none
		}},
		{id: "dest_connect", level: precheck.Error, inText: "connect", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Destination.Database = "no_such_db"
			return none
		}},
		{id: "source_db_name", level: precheck.Error, inText: "my-shop", inFix: "RENAME", setup: func(t *testing.T, s *spec.Spec) func() {
			require.NoError(t, srcPG.CreateDatabase(ctx, "my-shop"))
			s.Source.Database = "my-shop" // the spec parser refuses it; the item holds on its own
			return none
		}},
		{id: "wal_level", level: precheck.Error, inText: "replica", inFix: "wal_level = logical", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Source = plainPG.Endpoint("postgres")
			return none
		}},
		{id: "replication_slots", level: precheck.Error, inText: "max_replication_slots is 1", inFix: "max_replication_slots", setup: func(t *testing.T, s *spec.Spec) func() {
			conn, err := tightPG.Connect(ctx, "postgres")
			require.NoError(t, err)
			testharness.Exec(t, conn, `SELECT pg_create_logical_replication_slot('other_tool', 'pgoutput')`)
			s.Source = tightPG.Endpoint("postgres")
			return func() {
				testharness.Exec(t, conn, `SELECT pg_drop_replication_slot('other_tool')`)
				conn.Close(ctx)
			}
		}},
		{id: "wal_senders", level: precheck.Error, inText: "max_wal_senders is 1", inFix: "max_wal_senders", setup: func(t *testing.T, s *spec.Spec) func() {
			cfg, err := pgconn.ParseConfig(tightPG.URL("postgres") + "&replication=database")
			require.NoError(t, err)
			repl, err := pgconn.ConnectConfig(ctx, cfg)
			require.NoError(t, err)
			s.Source = tightPG.Endpoint("postgres")
			return func() { repl.Close(ctx) }
		}},
		{id: "source_privileges", level: precheck.Error, inText: "no REPLICATION", inFix: "REPLICATION", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Source.User = "weak"
			return none
		}},
		{id: "source_privileges", level: precheck.Error, inText: "no SELECT on public.child", inFix: "GRANT SELECT", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Source.User = "weak"
			return none
		}},
		{id: "ddl_capture", level: precheck.Warning, inText: "not a superuser", inFix: "ignore_precheck", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Source.User = "repl_owner"
			s.Objects = []spec.Object{{Schema: "owned"}}
			return none
		}},
		{id: "dest_privileges", level: precheck.Error, inText: "cannot create schemas", inFix: "GRANT CREATE ON DATABASE", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Destination.User = "dweak"
			return none
		}},
		{id: "replica_role_privilege", level: precheck.Error, inText: "session_replication_role", inFix: "GRANT SET ON PARAMETER", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Destination.User = "dweak"
			return none
		}},
		{id: "objects_exist", level: precheck.Error, inText: "nope", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Objects = []spec.Object{{Schema: "public", Tables: []spec.Table{{Name: "nope"}}}, {Schema: "missing_schema"}}
			return none
		}},
		{id: "row_filters", level: precheck.Error, inText: `column "nope" does not exist`, inFix: "boolean SQL expression", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Objects = []spec.Object{{Schema: "public", Tables: []spec.Table{{Name: "parent", Where: "nope = 1"}}}}
			return none
		}},
		{id: "row_filters", level: precheck.Error, inText: "functions", inFix: "boolean SQL expression", setup: func(t *testing.T, s *spec.Spec) func() {
			// A volatile function, in a full-only task too: checked as a publication would check it.
			f := false
			s.Sync.Incremental = &f
			s.Objects = []spec.Object{{Schema: "public", Tables: []spec.Table{{Name: "parent", Where: "random() < 0.5"}}}}
			return none
		}},
		{id: "row_filters", level: precheck.Error, inText: "public.parent", inFix: "boolean SQL expression", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Objects = []spec.Object{{Schema: "public", Tables: []spec.Table{{Name: "parent", Where: "id IN (SELECT 1)"}}}}
			return none
		}},
		{id: "primary_keys", level: precheck.Warning, inText: "lab.nokey", inFix: "PRIMARY KEY", setup: func(t *testing.T, s *spec.Spec) func() {
			testharness.Exec(t, src, `CREATE TABLE lab.nokey (a int, b text)`)
			s.Objects = []spec.Object{{Schema: "lab"}}
			return func() { testharness.Exec(t, src, `DROP TABLE lab.nokey`) }
		}},
		{id: "conflicting_tables", level: precheck.Error, inText: "public.parent", setup: func(t *testing.T, s *spec.Spec) func() {
			testharness.Exec(t, dst, `CREATE TABLE public.parent (x int)`)
			return func() { testharness.Exec(t, dst, `DROP TABLE public.parent`) }
		}},
		{id: "conflicting_tables", level: precheck.Warning, inText: "public.parent", setup: func(t *testing.T, s *spec.Spec) func() {
			testharness.Exec(t, dst, `CREATE TABLE public.parent (x int)`)
			s.ConflictMode = spec.ConflictIgnore
			return func() { testharness.Exec(t, dst, `DROP TABLE public.parent`) }
		}},
		{id: "dest_schemas", level: precheck.Error, inText: `"mart" exists`, inFix: "GRANT CREATE ON SCHEMA", setup: func(t *testing.T, s *spec.Spec) func() {
			testharness.Exec(t, dst, `CREATE SCHEMA mart`)
			s.Destination.User = "dcreator"
			s.Objects = []spec.Object{{Schema: "public", To: "mart"}}
			return func() { testharness.Exec(t, dst, `DROP SCHEMA mart`) }
		}},
		{id: "unlogged_tables", level: precheck.Warning, inText: "lab.scratch", inFix: "SET LOGGED", setup: func(t *testing.T, s *spec.Spec) func() {
			testharness.Exec(t, src, `CREATE UNLOGGED TABLE lab.scratch (id int PRIMARY KEY)`)
			s.Objects = []spec.Object{{Schema: "lab"}}
			return func() { testharness.Exec(t, src, `DROP TABLE lab.scratch`) }
		}},
		{id: "unsupported_tables", level: precheck.Error, inText: "inherits from public.parent", inFix: "exclude", setup: func(t *testing.T, s *spec.Spec) func() {
			testharness.Exec(t, src, `CREATE TABLE lab.heir (extra int) INHERITS (public.parent)`)
			s.Objects = []spec.Object{{Schema: "lab"}}
			return func() { testharness.Exec(t, src, `DROP TABLE lab.heir`) }
		}},
		{id: "fk_parents_selected", level: precheck.Warning, inText: "public.child -> public.parent", setup: func(t *testing.T, s *spec.Spec) func() {
			s.Objects = []spec.Object{{Schema: "public", Tables: []spec.Table{{Name: "child"}}}}
			return none
		}},
		{id: "long_transactions", level: precheck.Warning, inText: "pid", inFix: "pg_terminate_backend", setup: func(t *testing.T, s *spec.Spec) func() {
			conn, err := srcPG.Connect(ctx, "shop")
			require.NoError(t, err)
			testharness.Exec(t, conn, `BEGIN; SELECT txid_current()`)
			time.Sleep(1200 * time.Millisecond)
			return func() { conn.Close(ctx) }
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.id+"_"+sc.level, func(t *testing.T) {
			s := base()
			cleanup := sc.setup(t, &s)
			defer cleanup()
			items := run(s, precheck.Options{LongTransaction: time.Second})
			it, ok := itemByID(items, sc.id)
			require.True(t, ok, "item %s missing from %+v", sc.id, items)
			require.False(t, it.Passed, "%s should fail: %s", sc.id, it.Detail)
			require.Equal(t, sc.level, it.Level)
			require.Contains(t, it.Detail, sc.inText)
			require.Contains(t, it.Fix, sc.inFix)
			require.True(t, it.Blocking(nil))
			if sc.level == precheck.Warning {
				require.False(t, it.Blocking([]string{sc.id}), "an ignored warning does not block")
			}
		})
	}

	t.Run("sequences that columns use without owning them are created, not refused", func(t *testing.T) {
		testharness.Exec(t, src, `CREATE SEQUENCE lab.shared_seq; CREATE TABLE lab.uses (id bigint PRIMARY KEY DEFAULT nextval('lab.shared_seq'))`)
		defer testharness.Exec(t, src, `DROP TABLE lab.uses; DROP SEQUENCE lab.shared_seq`)
		s := base()
		s.Objects = []spec.Object{{Schema: "lab"}}
		it, _ := itemByID(run(s, precheck.Options{}), "sequences_selected")
		require.True(t, it.Passed, it.Detail)
		require.Contains(t, it.Detail, "lab.uses.id")
		require.Contains(t, it.Detail, "created on the destination too")
	})

	t.Run("a missing table does not stop the other items", func(t *testing.T) {
		testharness.Exec(t, src, `CREATE TABLE lab.nokey (a int, b text); CREATE UNLOGGED TABLE lab.scratch (id int PRIMARY KEY)`)
		defer testharness.Exec(t, src, `DROP TABLE lab.nokey, lab.scratch`)
		s := base()
		s.Objects = []spec.Object{{Schema: "lab", Tables: []spec.Table{{Name: "nope"}, {Name: "nokey"}, {Name: "scratch"}}},
			{Schema: "public", Tables: []spec.Table{{Name: "child"}}}}
		items := run(s, precheck.Options{})
		failed := map[string]string{}
		for _, it := range api.Failed(items, nil) {
			failed[it.ID] = it.Detail
		}
		require.Contains(t, failed["objects_exist"], `"lab"."nope"`)
		require.Contains(t, failed["primary_keys"], "lab.nokey", "checked on the tables that exist")
		require.Contains(t, failed["unlogged_tables"], "lab.scratch")
		require.Contains(t, failed["fk_parents_selected"], "public.child -> public.parent")
		require.Len(t, failed, 4, "%v", failed)
	})

	t.Run("dest_extensions: an available extension is created by Skein, an installed one is used", func(t *testing.T) {
		// (Both test servers share one installation, so "not available" cannot be set up here.)
		testharness.Exec(t, src, `CREATE EXTENSION citext; CREATE TABLE lab.ci (id int PRIMARY KEY, email citext)`)
		defer testharness.Exec(t, src, `DROP TABLE lab.ci; DROP EXTENSION citext`)
		s := base()
		s.Objects = []spec.Object{{Schema: "lab"}}
		it, _ := itemByID(run(s, precheck.Options{}), "dest_extensions")
		require.True(t, it.Passed, it.Detail)
		require.Contains(t, it.Detail, "Skein creates: citext")
		testharness.Exec(t, dst, `CREATE EXTENSION citext`)
		defer testharness.Exec(t, dst, `DROP EXTENSION citext`)
		it, _ = itemByID(run(s, precheck.Options{}), "dest_extensions")
		require.True(t, it.Passed, it.Detail)
		require.NotContains(t, it.Detail, "Skein creates")
	})

	t.Run("version thresholds", func(t *testing.T) {
		require.False(t, precheck.VersionItem("source_version", 90624, "PostgreSQL 9.6.24", 100000, "PostgreSQL 10").Passed)
		require.True(t, precheck.VersionItem("source_version", 100000, "PostgreSQL 10.0", 100000, "PostgreSQL 10").Passed)
		require.False(t, precheck.VersionItem("dest_version", 110000, "PostgreSQL 11", 120000, "PostgreSQL 12").Passed)
	})

	t.Run("replica_identity: Skein sets FULL on keyless tables unless the item is ignored", func(t *testing.T) {
		testharness.Exec(t, src, `CREATE TABLE lab.nokey (a int, b text); CREATE TABLE lab.nokey2 (a int)`)
		defer testharness.Exec(t, src, `DROP TABLE lab.nokey, lab.nokey2`)
		s := base()
		s.Objects = []spec.Object{{Schema: "lab"}}
		it, _ := itemByID(run(s, precheck.Options{}), "replica_identity")
		require.Contains(t, it.Detail, "lab.nokey")
		require.False(t, it.Blocking(nil))

		var aenv testsuite.WorkflowTestSuite
		env := aenv.NewTestActivityEnvironment()
		env.RegisterActivity(&activities.Activities{Log: zaptest.NewLogger(t)})
		tables := []spec.TableMap{{Source: spec.QName{Schema: "lab", Name: "nokey"}, Dest: spec.QName{Schema: "lab", Name: "nokey"}}}
		s.IgnorePrecheck = []string{"replica_identity"}
		_, err := env.ExecuteActivity((&activities.Activities{}).PreparePublication, s, tables)
		require.NoError(t, err)
		var ident string
		require.NoError(t, src.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = 'lab.nokey'::regclass`).Scan(&ident))
		require.Equal(t, "d", ident, "ignored: left alone")

		s.IgnorePrecheck = nil
		_, err = env.ExecuteActivity((&activities.Activities{}).PreparePublication, s, tables)
		require.NoError(t, err)
		require.NoError(t, src.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = 'lab.nokey'::regclass`).Scan(&ident))
		require.Equal(t, "f", ident)
		testharness.Exec(t, src, `DROP PUBLICATION skein_pre`)
	})

	t.Run("skein precheck prints the items and exits 1 on a failure", func(t *testing.T) {
		bin := buildSkein(t)
		startWorker(t, t.TempDir())
		dir := t.TempDir()
		write := func(s spec.Spec) string {
			b, err := yaml.Marshal(s)
			require.NoError(t, err)
			f := filepath.Join(dir, s.Name+".yaml")
			require.NoError(t, os.WriteFile(f, b, 0o600))
			return f
		}
		good := base()
		r := runSkein(t, bin, "precheck", "-f", write(good), "--json")
		require.Equal(t, 0, r.code, r.stderr+r.stdout)
		var items []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &items))
		require.NotEmpty(t, items)
		for _, it := range items {
			keys := make([]string, 0, len(it))
			for k := range it {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			require.Equal(t, []string{"detail", "fix", "id", "level", "passed"}, keys)
		}

		bad := base()
		bad.Name = "pre-bad"
		bad.Destination.User = "dweak"
		r = runSkein(t, bin, "precheck", "-f", write(bad))
		require.Equal(t, 1, r.code, r.stdout)
		require.Contains(t, r.stdout, "replica_role_privilege")
		require.Contains(t, r.stdout, "FAILED")
		require.Contains(t, r.stdout, "fix: ")
		require.True(t, strings.Contains(r.stderr, "precheck failed"), r.stderr)
	})
}
