package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// TestStalledDestinationConnectionIsReplaced freezes the apply's destination connection for good
// (its packets stop in one direction, new connections work): after the stall limit the apply
// asks the server, finds the session idle, and starts again on a new connection; every change
// arrives once. A statement that waits for a lock as long is left alone.
func TestStalledDestinationConnectionIsReplaced(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := clusterPair(t, true, "st", `CREATE SCHEMA st;
CREATE TABLE st.t (id int PRIMARY KEY, v text);
INSERT INTO st.t SELECT i, 'v' || i FROM generate_series(1, 100) i`)
	proxy, err := testharness.NewProxyTo(dstPG.Endpoint("target").Port)
	require.NoError(t, err)
	defer proxy.Close()
	c := startWorker(t, t.TempDir())
	s := spec.Spec{Name: "it-stall", Source: srcPG.Endpoint("st"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "st"}}, Verify: spec.Verify{Mode: spec.VerifyCount}}
	s.Destination.Port = proxy.Port
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 200 * time.Millisecond, ApplyStallAfter: 3 * time.Second}})
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	check := []tableCheck{tableOf("st", "t", "st", "t", "id", "v")}
	next := 101
	writeRows := func(n int) {
		testharness.Exec(t, src, fmt.Sprintf(`INSERT INTO st.t SELECT i, 'w' || i FROM generate_series(%d, %d) i; UPDATE st.t SET v = v || '+' WHERE id %% 10 = 0`, next, next+n-1))
		next += n
	}
	write := func() { writeRows(50) }

	t.Run("a statement waiting for a lock is left alone", func(t *testing.T) {
		lock, err := dstPG.Connect(ctx, "target")
		require.NoError(t, err)
		defer lock.Close(ctx)
		testharness.Exec(t, lock, `BEGIN; LOCK TABLE st.t IN ACCESS EXCLUSIVE MODE`)
		write()
		time.Sleep(8 * time.Second) // well past the stall limit
		testharness.Exec(t, lock, `COMMIT`)
		testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, check) })
		st := status(t, c, run.GetID())
		require.NotContains(t, st.LastError, "stopped answering", "a session the server works on is not stalled")
	})
	for _, dir := range []struct {
		name  string
		dir   testharness.Direction
		after testharness.Direction // frozen a moment after the write, when set
		rows  int
	}{
		{"answers lost", testharness.ToClient, 0, 50},
		{"statements lost", testharness.ToServer, 0, 50},
		// A large transaction's first statements ran and hold their locks, then the path dies:
		// not even the client's goodbye arrives, and the server's session would keep its locks
		// (its uncommitted rows) against the next run.
		{"answers lost, then everything", testharness.ToClient, testharness.BothWays, 30000},
	} {
		t.Run(dir.name, func(t *testing.T) {
			waitPhase(t, c, run.GetID(), api.PhaseIncremental, time.Minute)
			testharness.Eventually(t, time.Minute, func() error { // the apply's connection, once it is open again
				if proxy.Freeze(dir.dir) == 0 {
					return fmt.Errorf("no destination connection yet")
				}
				return nil
			})
			writeRows(dir.rows)
			if dir.after != 0 {
				time.Sleep(time.Second)
				proxy.Freeze(dir.after)
			}
			testharness.Eventually(t, 2*time.Minute, func() error { return compareAll(ctx, src, dst, check) })
			// The stall's error, recovered from (the new run's first report ends the streak).
			var st api.Status
			testharness.Eventually(t, 30*time.Second, func() error {
				if st = status(t, c, run.GetID()); st.LastError != "" || st.LastRecoveredError == "" {
					return fmt.Errorf("not recovered yet: last error %q, last recovered %q", st.LastError, st.LastRecoveredError)
				}
				return nil
			})
			require.Contains(t, st.LastRecoveredError, "the destination connection stopped answering")
			require.True(t, strings.Contains(st.LastRecoveredError, "idle") || strings.Contains(st.LastRecoveredError, "no session"), st.LastRecoveredError)
		})
	}
}
