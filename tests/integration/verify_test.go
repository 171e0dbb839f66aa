package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/pkg/verify"
)

// TestVerifyWhileStreaming runs `skein verify` on a task in incremental: clean while the source
// takes constant writes (no false differences), then differences made on the destination are each
// reported by key, in the JSON, the table and the task's status.
func TestVerifyWhileStreaming(t *testing.T) {
	parallel(t)
	eachDestination(t, testVerifyWhileStreaming)
}

func testVerifyWhileStreaming(t *testing.T) {
	bin := buildSkein(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-verify", srcPG, dstPG)
	run := startTask(t, c, s, nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	t.Run("unknown task exits 2", func(t *testing.T) {
		r := runSkein(t, bin, "verify", "no-such-task")
		require.Equal(t, 2, r.code, r.stderr)
		require.Contains(t, r.stderr, "no task no-such-task")
	})

	t.Run("constant writes report no false difference", func(t *testing.T) {
		stopWriter := startWriter(t, srcPG, 5*time.Millisecond, func(i int) []string {
			return []string{
				fmt.Sprintf(`INSERT INTO shop.orders (customer_id, amount) VALUES (%d, %d)`, 1+i%1000, i),
				fmt.Sprintf(`UPDATE shop.orders SET amount = amount + 1, payload = '{"w": %d}' WHERE id = %d`, i, 1+(i*7919)%20000),
				fmt.Sprintf(`DELETE FROM shop.orders WHERE id = %d`, 1+(i*104729)%20000),
				fmt.Sprintf(`UPDATE shop.customers SET note = 'w%d' WHERE id = %d`, i, 1+(i*31)%2000),
				fmt.Sprintf(`INSERT INTO shop.events VALUES (now(), 'w', '%d')`, i),
			}
		})
		time.Sleep(time.Second)
		r := runSkein(t, bin, "verify", run.GetID())
		before := int64(stopWriter()) * 5 // statements: five per round
		require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stdout, "the destination equals the source (4 tables)")
		require.Contains(t, r.stdout, "re-checked after the apply passed it")
		require.Greater(t, before, int64(100), "the source took writes during the verification")
	})

	// Wait for the apply to catch up, then break the destination in four ways.
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	testharness.Exec(t, dst, `DELETE FROM mart.orders WHERE id = 5;
INSERT INTO mart.clients (id, name) VALUES (900000, 'ghost');
UPDATE mart.profiles SET mood = 'sad' WHERE id = 7;
DELETE FROM mart.events WHERE ctid = (SELECT ctid FROM mart.events WHERE kind = 'dup' LIMIT 1)`)

	t.Run("differences are reported by key", func(t *testing.T) {
		r := runSkein(t, bin, "verify", run.GetID(), "--json")
		require.Equal(t, 1, r.code, r.stderr)
		var rep api.VerifyReport
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
		require.False(t, rep.Equal)
		require.True(t, rep.Streaming)
		got := map[string][]verify.Diff{}
		for _, tr := range rep.Tables {
			got[tr.Source] = tr.Diffs
		}
		require.Equal(t, []verify.Diff{{Kind: verify.Missing, Key: "id=5"}}, got["shop.orders"])
		require.Equal(t, []verify.Diff{{Kind: verify.Extra, Key: "id=900000"}}, got["shop.customers"], "the renamed table mart.clients")
		require.Equal(t, []verify.Diff{{Kind: verify.Different, Key: "id=7"}}, got["shop.profiles"])
		require.Len(t, got["shop.events"], 1)
		require.Equal(t, verify.Missing, got["shop.events"][0].Kind)
		require.Regexp(t, `^row md5 [0-9a-f]{32}$`, got["shop.events"][0].Key, "a row of a table without a key is named by its hash, not its values")
		require.NotContains(t, got["shop.events"][0].Key, "dup")

		r = runSkein(t, bin, "verify", run.GetID())
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stdout, "DIFFER")
		require.Regexp(t, `missing\s+id=5`, r.stdout)
		require.Contains(t, r.stdout, "the destination DIFFERS from the source")

		// The task's status (and history) holds the last report.
		testharness.Eventually(t, 30*time.Second, func() error {
			for _, v := range status(t, c, run.GetID()).Verify {
				if v.Source == "shop.orders" && v.Missing == 1 {
					return nil
				}
			}
			return fmt.Errorf("the task's status has no verify report")
		})
	})

	t.Run("a paused task is not verified", func(t *testing.T) {
		require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalPause, nil))
		waitPhase(t, c, run.GetID(), api.PhasePaused, time.Minute)
		r := runSkein(t, bin, "verify", run.GetID())
		require.Equal(t, 2, r.code, r.stderr)
		require.True(t, strings.Contains(r.stderr, "is paused"), r.stderr)
	})
}

// verifyTask runs a Verify workflow for task id, as the Temporal CLI would start it, and returns
// its report.
func verifyTask(t *testing.T, c client.Client, id string) api.VerifyReport {
	t.Helper()
	ctx := context.Background()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: api.TaskQueue},
		api.VerifyWorkflowName, api.VerifyRequest{Task: id})
	require.NoError(t, err)
	var rep api.VerifyReport
	require.NoError(t, run.Get(ctx, &rep))
	return rep
}
