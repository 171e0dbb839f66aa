package source_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestReplicaIdentitiesRestored: the tables slots set to REPLICA IDENTITY FULL get their identity
// back (default, nothing, an index) when the last slot that needed it is released; a FULL the
// user set stays; the record table and Skein's schema go with the last release.
func TestReplicaIdentitiesRestored(t *testing.T) {
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{})
	conn, err := pg.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer conn.Close(ctx)
	testharness.Exec(t, conn, `CREATE SCHEMA app;
CREATE TABLE app.a (v int);
CREATE TABLE app.b (v int); ALTER TABLE app.b REPLICA IDENTITY NOTHING;
CREATE TABLE app."C c" (v int NOT NULL); CREATE UNIQUE INDEX c_idx ON app."C c" (v); ALTER TABLE app."C c" REPLICA IDENTITY USING INDEX c_idx;
CREATE TABLE app.d (v int); ALTER TABLE app.d REPLICA IDENTITY FULL`)
	identity := func(table string) string {
		var id string
		require.NoError(t, conn.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = $1::regclass`, table).Scan(&id))
		return id
	}
	q := func(name string) spec.QName { return spec.QName{Schema: "app", Name: name} }
	for _, name := range []string{"a", "b", "C c", "d"} {
		require.NoError(t, source.SetFullIdentity(ctx, conn, "skein_one", q(name)))
		require.Equal(t, "f", identity(q(name).Quoted()))
	}
	require.NoError(t, source.SetFullIdentity(ctx, conn, "skein_two", q("a")), "a second task needs a too")

	restored, err := source.RestoreIdentities(ctx, conn, "skein_one")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{`app.b: NOTHING`, `app."C c": USING INDEX "c_idx"`}, restored)
	require.Equal(t, map[string]string{"app.a": "f", "app.b": "n", `app."C c"`: "i", "app.d": "f"},
		map[string]string{"app.a": identity("app.a"), "app.b": identity("app.b"), `app."C c"`: identity(`app."C c"`), "app.d": identity("app.d")},
		"a stays FULL for the other task, d was the user's")

	restored, err = source.RestoreIdentities(ctx, conn, "skein_two")
	require.NoError(t, err)
	require.Equal(t, []string{"app.a: DEFAULT"}, restored)
	require.Equal(t, "d", identity("app.a"))
	var schemas int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'skein'`).Scan(&schemas))
	require.Zero(t, schemas, "the record table and Skein's schema go with the last release")
	restored, err = source.RestoreIdentities(ctx, conn, "skein_two")
	require.NoError(t, err, "again: nothing to do")
	require.Empty(t, restored)
}
