package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestSourceFailover moves the source to a promoted standby that holds the task's slot (a copy of
// the primary's, as slot synchronization would keep it). A standby that had every change the
// destination applied is followed: the stream goes on from its new timeline and nothing is lost
// or doubled. A standby that was behind fails the task at once, naming the timeline switch and
// the changes the new server never had.
func TestSourceFailover(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	check := []tableCheck{{src: spec.QName{Schema: "app", Name: "t"}, dst: spec.QName{Schema: "app", Name: "t"},
		srcCols: []string{"id", "v"}, srcKey: []string{"id"}}}
	// start runs a task from the primary through a proxy, and makes the standby once the slot
	// exists.
	start := func(t *testing.T, name string) (primary, standby *testharness.Postgres, proxy *testharness.Proxy, run string, dst *pgx.Conn, src *pgx.Conn) {
		primary, dstPG, src, dst := clusterPair(t, true, "app", `CREATE SCHEMA app;
CREATE TABLE app.t (id int PRIMARY KEY, v text);
INSERT INTO app.t SELECT i, 'v' || i FROM generate_series(1, 100) i`)
		proxy, err := testharness.NewProxyTo(primary.Port)
		require.NoError(t, err)
		t.Cleanup(func() { proxy.Close() })
		c := startWorker(t, t.TempDir())
		s := spec.Spec{Name: name, Source: primary.Endpoint("app"), Destination: dstPG.Endpoint("target"),
			Objects: []spec.Object{{Schema: "app"}}, Verify: spec.Verify{Mode: spec.VerifyCount}}
		s.Source.Port = proxy.Port
		r := startTask(t, c, s, nil)
		waitPhase(t, c, r.GetID(), api.PhaseIncremental, 3*time.Minute)
		standby = primary.NewStandby(t) // stops the primary for a moment: the stream reconnects
		src.Close(ctx)
		src, err = primary.Connect(ctx, "app")
		require.NoError(t, err)
		t.Cleanup(func() { src.Close(ctx) })
		return primary, standby, proxy, r.GetID(), dst, src
	}
	write := func(t *testing.T, conn *pgx.Conn, from, to int) {
		testharness.Exec(t, conn, fmt.Sprintf(`SET synchronous_commit = on;
INSERT INTO app.t SELECT i, 'w' || i FROM generate_series(%d, %d) i;
UPDATE app.t SET v = v || '+' WHERE id %% 7 = 0`, from, to))
	}
	failOver := func(t *testing.T, primary, standby *testharness.Postgres, proxy *testharness.Proxy) *pgx.Conn {
		require.NoError(t, primary.StopServer(ctx, "immediate"))
		require.NoError(t, standby.Promote(ctx))
		proxy.SetTarget(fmt.Sprintf("127.0.0.1:%d", standby.Port))
		proxy.Reset()
		conn, err := standby.Connect(ctx, "app")
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}

	t.Run("a standby with every applied change is followed", func(t *testing.T) {
		primary, standby, proxy, id, dst, src := start(t, "it-failover-ok")
		c := temporalClient(t)
		write(t, src, 101, 300)
		testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, check) })
		// The standby has replayed everything the primary wrote.
		var end string
		require.NoError(t, src.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&end))
		sb, err := standby.Connect(ctx, "app")
		require.NoError(t, err)
		testharness.Eventually(t, time.Minute, func() error {
			var behind bool
			if err := sb.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn() < $1::pg_lsn`, end).Scan(&behind); err != nil {
				return err
			}
			if behind {
				return fmt.Errorf("the standby has not replayed up to %s", end)
			}
			return nil
		})
		sb.Close(ctx)

		newSrc := failOver(t, primary, standby, proxy)
		write(t, newSrc, 301, 500)
		testharness.Eventually(t, 2*time.Minute, func() error {
			if st := status(t, c, id); st.Phase == api.PhaseFailed {
				return fmt.Errorf("failed: %s", st.LastError)
			}
			return compareAll(ctx, newSrc, dst, check)
		})
		var timeline int
		require.NoError(t, dst.QueryRow(ctx, `SELECT timeline FROM skein.progress WHERE task = $1`, id).Scan(&timeline))
		require.Equal(t, 2, timeline, "the progress row follows the new timeline")
		waitPhase(t, c, id, api.PhaseIncremental, time.Minute)
		write(t, newSrc, 501, 510)
		testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, newSrc, dst, check) })
	})

	t.Run("a standby that was behind fails the task at once", func(t *testing.T) {
		primary, standby, proxy, id, dst, src := start(t, "it-failover-lost")
		c := temporalClient(t)
		// The standby stops receiving; the destination gets changes it never will.
		require.NoError(t, standby.StopServer(ctx, "fast"))
		write(t, src, 101, 300)
		testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, check) })
		require.NoError(t, primary.StopServer(ctx, "immediate"))
		require.NoError(t, standby.StartServer(ctx))
		require.NoError(t, standby.Promote(ctx))
		proxy.SetTarget(fmt.Sprintf("127.0.0.1:%d", standby.Port))
		proxy.Reset()
		st := waitPhase(t, c, id, api.PhaseFailed, 2*time.Minute)
		require.Contains(t, st.LastError, "the source failed over")
		require.Contains(t, st.LastError, "left timeline 1")
		require.Contains(t, st.LastError, "release the task and start it again")
	})
}
