package dialect

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/testharness"
)

func connect(t *testing.T, port int) *pgconn.PgConn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&search_path=pg_catalog", port))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// TestPin pins real servers: plain PostgreSQL needs nothing, IvorySQL's Oracle-mode port is
// switched to PostgreSQL mode, its PostgreSQL-mode port needs nothing.
func TestPin(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL and IvorySQL servers")
	}
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{})
	ivory := testharness.NewIvorySQL(t, testharness.PostgresOptions{})
	for _, tc := range []struct {
		name          string
		port          int
		product, mode string
		pinned        []string
	}{
		{"postgres", pg.Port, "PostgreSQL", "pg", nil},
		{"ivorysql oracle port", ivory.OraclePort, "IvorySQL", "oracle", []string{"ivorysql.compatible_mode = pg"}},
		{"ivorysql pg port", ivory.Port, "IvorySQL", "pg", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			conn := connect(t, tc.port)
			d, err := Pin(ctx, conn)
			require.NoError(t, err)
			require.Equal(t, tc.product, d.Product)
			require.Equal(t, tc.mode, d.Mode)
			require.Equal(t, tc.pinned, d.Pinned)
			require.Equal(t, d, Of(conn))
			require.NotEmpty(t, d.Version)
			if tc.product == "IvorySQL" {
				require.Equal(t, "interchange", d.Found["ivorysql.identifier_case_switch"])
				require.Contains(t, d.String(), "ivorysql.enable_emptystring_to_NULL = on")
			}
			require.Len(t, d.Probes, 6)
			for _, p := range d.Probes {
				require.True(t, p.OK, "%s: %s", p.Name, p.Found)
			}
			require.Contains(t, d.String(), "probed: a quoted lower-case name stays lower-case: yes")
			require.Contains(t, d.String(), "a failed statement aborts its transaction: yes")
			probes, err := check(ctx, conn)
			require.NoError(t, err)
			require.Empty(t, failedProbes(probes), "after Pin the session has PostgreSQL semantics")
			var n int
			require.NoError(t, conn.Exec(ctx, "SELECT 1").Close(), "the session is usable after the probes")
			res, err := conn.Exec(ctx, "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'skein_probe_ddl'").ReadAll()
			require.NoError(t, err)
			fmt.Sscan(string(res[0].Rows[0][0]), &n) //nolint:errcheck
			require.Zero(t, n, "the probe's table is gone")
		})
	}

	t.Run("an unpinned Oracle-mode session is caught", func(t *testing.T) {
		conn := connect(t, ivory.OraclePort)
		probes, err := check(context.Background(), conn)
		require.NoError(t, err)
		wrong := failedProbes(probes)
		require.Contains(t, wrong, `a quoted lower-case name is read as "SKEIN_CASE"`)
		require.Contains(t, wrong, "an empty string is read as NULL")
		require.Contains(t, wrong, "date is not PostgreSQL's date")
	})
}
