package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// TestDestinationRefusalIsReported: a destination that refuses a row of a chunk big enough that
// the source is still sending when it does (50,000 rows, 10 MB, one chunk) fails the load with
// the destination's own error, classified by it: a CHECK whose function refuses the first row as
// a feature not supported (0A000, as IvorySQL without libxml refuses xml values, which the
// precheck now catches first: the task fails at once, no retries), a plain CHECK that the first
// row fails (an "other" error: retried within its window, then failed). The source half's "destination
// stopped reading" is never what the task reports.
func TestDestinationRefusalIsReported(t *testing.T) {
	parallel(t)
	eachDestination(t, func(t *testing.T) {
		ctx := context.Background()
		srcPG, dstPG, _, dst := clusterPair(t, false, "docs", `CREATE SCHEMA s;
CREATE TABLE s.docs (id int PRIMARY KEY, body text, x text);
INSERT INTO s.docs SELECT g, repeat('b', 150), '<a>' || g || '</a>' FROM generate_series(1, 50000) g;
ANALYZE s.docs`)
		oracle := strings.HasSuffix(t.Name(), "oracle")
		// The destination's table exists (schema sync off), with a CHECK that the first row fails
		// (PostgreSQL), or whose function refuses it as a feature not supported (IvorySQL).
		dest := `CREATE SCHEMA s; CREATE TABLE s.docs (id int PRIMARY KEY CHECK (id > 1), body text, x text)`
		want, class := "violates check constraint", "other"
		if oracle {
			dest = `CREATE SCHEMA s;
CREATE FUNCTION s.refuse(id int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  IF id = 1 THEN RAISE EXCEPTION 'this destination does not take such a row' USING ERRCODE = '0A000'; END IF;
  RETURN true;
END $f$;
CREATE TABLE s.docs (id int PRIMARY KEY CHECK (s.refuse(id)), body text, x text)`
			want, class = "this destination does not take such a row", "fatal"
		}
		testharness.Exec(t, dst, dest)
		c := startWorker(t, t.TempDir())
		f, no := false, false
		s := spec.Spec{Name: "it-refusal", Source: srcPG.Endpoint("docs"), Destination: dstPG.Endpoint("target"),
			Objects: []spec.Object{{Schema: "s"}}, Sync: spec.Sync{Schema: &f, Incremental: &no},
			Retry: spec.Retry{OtherMinutes: 3}}
		run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{RetryUnit: time.Second}})
		st := waitPhase(t, c, run.GetID(), api.PhaseFailed, 2*time.Minute)
		require.Contains(t, st.LastError, want)
		require.Contains(t, st.LastError, "write to destination")
		require.NotContains(t, st.LastError, "destination stopped reading")
		require.NotContains(t, st.LastError, "retryable", "the SDK's suffix is not the task's retry state")
		require.Equal(t, class, st.Retry.Class)
		if oracle {
			require.Equal(t, 1, st.Retry.Attempts, "a permanent error is not retried")
		} else {
			require.Greater(t, st.Retry.Attempts, 1, "an other error is retried within its window")
		}
		var n int
		require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM s.docs`).Scan(&n))
		require.Zero(t, n)
	})
}
