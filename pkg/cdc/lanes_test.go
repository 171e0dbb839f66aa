package cdc_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// laneSchema has what parallel apply places differently: a table spread by its key, one by a
// composite key, a keyless table (REPLICA IDENTITY FULL, whole to one lane), and one that is
// truncated (a barrier).
const laneSchema = `
CREATE TABLE public.acct (id int PRIMARY KEY, balance bigint NOT NULL, note text);
CREATE TABLE public.pairs (a int, b text, n int NOT NULL, PRIMARY KEY (a, b));
CREATE TABLE public.events (at int NOT NULL, what text);
ALTER TABLE public.events REPLICA IDENTITY FULL;
CREATE TABLE public.scratch (id int PRIMARY KEY, v text);
INSERT INTO public.acct SELECT i, 1000, NULL FROM generate_series(1, 400) i;
INSERT INTO public.pairs SELECT i, 'k' || i, 0 FROM generate_series(1, 100) i;
`

// TestLanesApplyExactlyOnce streams with parallel apply through restarts that cut the lanes at
// arbitrary points, with the lane count changing between runs (4, 2, 3, 1, 4), on both kinds of
// destination. Increments show a change applied twice, inserts one applied twice or skipped;
// transactions span tables and lanes, and the workload has every barrier: TRUNCATE, a key
// change, a transaction too large to hold.
func TestLanesApplyExactlyOnce(t *testing.T) {
	for _, dest := range destinations {
		t.Run(dest, func(t *testing.T) { testLanesApplyExactlyOnce(t, dest) })
	}
}

func testLanesApplyExactlyOnce(t *testing.T, dest string) {
	ctx := context.Background()
	p, src, dst := setupInto(t, dest, laneSchema)
	p.createAndLoad(t, src, dst)
	lanesOf := []int{4, 2, 3, 1, 4}
	withLanes := func(n int) func(o *cdc.StreamOptions) {
		return func(o *cdc.StreamOptions) {
			p.inLanes(o, n)
			o.BatchChanges = 700 // the big transaction below is too large to hold: a barrier
		}
	}
	nextID, at := 1000, 0
	ahead := 0 // runs that ended with lanes ahead of what the source was told
	locker, err := p.dst.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer locker.Close(ctx)
	for round, lanes := range lanesOf {
		if lanes > 1 {
			// The lane events goes to waits on a lock: the other lanes go ahead, and the run is
			// cut with its lanes apart.
			_, err := locker.Exec(ctx, `BEGIN; LOCK TABLE public.events IN ACCESS EXCLUSIVE MODE`)
			require.NoError(t, err)
		}
		stop := p.streamWith(t, withLanes(lanes))
		for i := 0; i < 40; i++ {
			tx, err := src.Begin(ctx)
			require.NoError(t, err)
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`UPDATE public.acct SET balance = balance + 1 WHERE id IN ($1, $2, $3)`, []any{1 + (i*7+round)%400, 1 + (i*13+5)%400, 1 + (i*31+11)%400}},
				{`INSERT INTO public.acct VALUES ($1, 0, $2)`, []any{nextID, fmt.Sprint("round ", round)}},
				{`UPDATE public.pairs SET n = n + 1 WHERE a = $1`, []any{1 + i%100}},
				{`INSERT INTO public.events VALUES ($1, 'tick'), ($1, 'tick')`, []any{at}},
				{`DELETE FROM public.events WHERE ctid = (SELECT ctid FROM public.events WHERE at = $1 LIMIT 1)`, []any{at - 3}},
				{`INSERT INTO public.scratch VALUES ($1, 'x')`, []any{nextID}},
			} {
				_, err := tx.Exec(ctx, q.sql, q.args...)
				require.NoError(t, err)
			}
			require.NoError(t, tx.Commit(ctx))
			nextID++
			at++
			switch i {
			case 10:
				_, err = src.Exec(ctx, `TRUNCATE public.scratch`)
			case 20:
				// A key change: the row moves to another lane.
				_, err = src.Exec(ctx, `UPDATE public.acct SET id = id + 100000, balance = balance + 5 WHERE id = $1`, 1+round)
			case 30:
				_, err = src.Exec(ctx, `UPDATE public.acct SET balance = balance + 10 WHERE id <= 400 OR id >= 100000`)
			}
			require.NoError(t, err)
		}
		time.Sleep(time.Duration(30+round*120) * time.Millisecond) // cut the run at various points
		require.NoError(t, stop(), "round %d (%d lanes)", round, lanes)
		_, err := locker.Exec(ctx, `ROLLBACK`)
		require.NoError(t, err)
		// The source sends again what came after its confirmed position: a lane row past it
		// means some lane applied part of that already, which the next run must skip.
		st, err := source.Slot(ctx, src, p.s.SlotName())
		require.NoError(t, err)
		var n int
		require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM "skein"."progress" WHERE "task" LIKE $1 || '#lane%' AND "lsn" > $2::pg_lsn`,
			p.s.Name, st.ConfirmedFlush.String()).Scan(&n))
		if n > 0 {
			ahead++
		}
		_, err = src.Exec(ctx, `UPDATE public.acct SET balance = balance - 1 WHERE id = $1`, 200+round)
		require.NoError(t, err)
	}
	require.Positive(t, ahead, "no run ended with its lanes apart: the restarts did not test the lane rows")

	// The last run ends where the lanes meet: the task's position covers everything.
	var mu sync.Mutex
	var last cdc.Progress
	target, err := source.CurrentWAL(ctx, src)
	require.NoError(t, err)
	done, cancel, closeConns := p.startStream(t, func(o *cdc.StreamOptions) {
		withLanes(3)(o)
		o.StopAt = target
		o.OnProgress = func(pr cdc.Progress) { mu.Lock(); last = pr; mu.Unlock() }
	})
	defer cancel()
	require.NoError(t, <-done)
	closeConns()
	for _, table := range []struct {
		name string
		cols []string
		key  []string
	}{
		{"acct", []string{"id", "balance", "note"}, []string{"id"}},
		{"pairs", []string{"a", "b", "n"}, []string{"a", "b"}},
		{"events", []string{"at", "what"}, []string{"at", "what"}},
		{"scratch", []string{"id", "v"}, []string{"id"}},
	} {
		q := spec.QName{Schema: "public", Name: table.name}
		require.NoError(t, testharness.CompareRows(ctx, src, dst, q, q, table.cols, table.cols, table.key, table.key))
	}
	var lanes int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM "skein"."progress" WHERE "task" LIKE $1 || '#lane%'`, p.s.Name).Scan(&lanes))
	require.Zero(t, lanes, "lane rows are left where the lanes met")
	mu.Lock()
	require.GreaterOrEqual(t, last.FlushedLSN, target)
	require.Positive(t, last.Counts.Updates)
	mu.Unlock()
}
