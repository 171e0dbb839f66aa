package ddlcapture_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestEventsComeBetweenTheRows: inside one transaction, each command's event is decoded after
// the rows written before the command and before those written after it, which is what lets the
// stream apply it as a barrier. (A message written in a subtransaction, as an EXCEPTION block
// makes, comes out after the rows that follow it.)
func TestEventsComeBetweenTheRows(t *testing.T) {
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{Logical: true})
	conn, err := pg.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, q := range []string{`SET synchronous_commit = on`, `CREATE SCHEMA app`, `CREATE TABLE app.b (id int PRIMARY KEY, n int)`,
		`CREATE PUBLICATION skein_x FOR TABLE app.b`, `SELECT pg_create_logical_replication_slot('probe', 'test_decoding')`} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	require.NoError(t, ddlcapture.Install(ctx, conn, "skein_x", ddlcapture.Selection{Publication: "skein_x", Schemas: []string{"app"}}))
	_, err = conn.Exec(ctx, `BEGIN; INSERT INTO app.b VALUES (1, 1); ALTER TABLE app.b ADD COLUMN tmp int; INSERT INTO app.b VALUES (2, 2, 2);
ALTER TABLE app.b DROP COLUMN tmp; INSERT INTO app.b VALUES (3, 3); CREATE TABLE app.c (id int); INSERT INTO app.c VALUES (4); COMMIT`)
	require.NoError(t, err)
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_get_changes('probe', NULL, NULL) WHERE data NOT LIKE 'BEGIN%' AND data NOT LIKE 'COMMIT%'`)
	require.NoError(t, err)
	data, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	var order []string
	for _, d := range data {
		switch {
		case strings.HasPrefix(d, "message:"):
			order = append(order, "event")
		case strings.HasPrefix(d, "table app."):
			order = append(order, d[len("table "):strings.Index(d, ":")]+" "+d[strings.LastIndex(d, ":")+1:])
		}
	}
	require.Equal(t, []string{"app.b 1", "event", "app.b 2", "event", "app.b 3", "event", "app.c 4"}, order)
}
