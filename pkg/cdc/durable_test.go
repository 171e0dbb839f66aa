package cdc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestDestinationCrashLosesNothing: the apply commits on the destination asynchronously (as a
// subscription does), and the destination may run with synchronous_commit = off itself. A crash
// of the destination then loses its last commits; the source must not have been told they were
// applied, or it would never send them again. Here the destination's WAL writer waits 10 s, so
// the last commits are still in its WAL buffers when it crashes; the stream that starts after the
// restart finds them missing and applies them again: both sides end equal, with one lane and with
// three.
func TestDestinationCrashLosesNothing(t *testing.T) {
	for _, lanes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d lanes", lanes), func(t *testing.T) { testDestinationCrashLosesNothing(t, lanes) })
	}
}

func testDestinationCrashLosesNothing(t *testing.T, lanes int) {
	ctx := context.Background()
	p, src, dst := setupWith(t, "postgres", `CREATE TABLE public.acct (id int PRIMARY KEY, balance bigint NOT NULL, note text);
INSERT INTO public.acct SELECT i, 1000, NULL FROM generate_series(1, 100) i;`, nil, []string{"wal_writer_delay = 10s", "synchronous_commit = off"})
	p.createAndLoad(t, src, dst)
	cols := []string{"id", "balance", "note"}
	tune := func(o *cdc.StreamOptions) { p.inLanes(o, lanes) }

	// A checkpoint writes out what the load left in the WAL buffers: what follows is the stream's.
	_, err := dst.Exec(ctx, "CHECKPOINT")
	require.NoError(t, err)
	stop := p.streamWith(t, tune)
	for i := range 40 {
		_, err := src.Exec(ctx, `UPDATE public.acct SET balance = balance + 1 WHERE id = $1`, 1+i%100)
		require.NoError(t, err)
		_, err = src.Exec(ctx, `INSERT INTO public.acct VALUES ($1, 0, 'after the load')`, 1000+i)
		require.NoError(t, err)
	}
	testharness.Eventually(t, time.Minute, func() error { return compare(ctx, src, dst, "acct", cols) })
	time.Sleep(time.Second) // five status intervals: the stream tells the source what it may

	// The test means something only if the destination holds commits it has not written out.
	var written, inserted string
	require.NoError(t, dst.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_flush_lsn()::text, pg_catalog.pg_current_wal_insert_lsn()::text`).Scan(&written, &inserted))
	flushLSN, err := pglogrepl.ParseLSN(written)
	require.NoError(t, err)
	insertLSN, err := pglogrepl.ParseLSN(inserted)
	require.NoError(t, err)
	require.Less(t, flushLSN, insertLSN, "the destination wrote out all its WAL: nothing for the crash to lose")
	st, err := source.Slot(ctx, src, p.s.SlotName())
	require.NoError(t, err)
	t.Logf("destination WAL written to %s of %s; the source was told %s", flushLSN, insertLSN, pglogrepl.LSN(st.ConfirmedFlush))

	// The crash, under the running stream (a stream that is stopped makes its commits durable
	// first: TestStopIsDurable); the stream fails with its connection.
	require.NoError(t, p.dst.RestartMode(ctx, "immediate", 0))
	t.Logf("the stream ended with: %v", stop())
	dst, err = p.dst.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer dst.Close(ctx)
	var after int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM public.acct WHERE note IS NOT NULL`).Scan(&after))
	require.Less(t, after, 40, "the crash lost none of the stream's commits: the test shows nothing")
	t.Logf("the crash lost %d of 40 inserted rows", 40-after)

	stop = p.streamWith(t, tune)
	testharness.Eventually(t, time.Minute, func() error { return compare(ctx, src, dst, "acct", cols) })
	require.NoError(t, stop())
}

// TestStopIsDurable: a stream that ends at its stop position (a cutover's catch-up) tells the
// source its whole position, though its commits were asynchronous: it makes the destination
// write them out first, and a crash of the destination after it loses nothing.
func TestStopIsDurable(t *testing.T) {
	ctx := context.Background()
	p, src, dst := setupWith(t, "postgres", `CREATE TABLE public.acct (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO public.acct SELECT i, 1000 FROM generate_series(1, 100) i;`, nil, []string{"wal_writer_delay = 10s", "synchronous_commit = off"})
	p.createAndLoad(t, src, dst)
	for i := range 20 {
		_, err := src.Exec(ctx, `UPDATE public.acct SET balance = balance + 1 WHERE id = $1`, 1+i)
		require.NoError(t, err)
	}
	target, err := source.CurrentWAL(ctx, src)
	require.NoError(t, err)
	done, _, closeConns := p.startStream(t, func(o *cdc.StreamOptions) { o.StopAt = target })
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the stream did not stop at its position")
	}
	closeConns()
	// The stream's last status reaches the source's walsender in its own time.
	testharness.Eventually(t, 10*time.Second, func() error {
		st, err := source.Slot(ctx, src, p.s.SlotName())
		if err != nil {
			return err
		}
		if pglogrepl.LSN(st.ConfirmedFlush) < target {
			return fmt.Errorf("the source was told %s, not the stream's whole position %s", pglogrepl.LSN(st.ConfirmedFlush), target)
		}
		return nil
	})
	before, err := bookkeeping.AppliedPosition(ctx, dst, p.s.Name)
	require.NoError(t, err)
	// What the source was told survives a crash of the destination.
	require.NoError(t, p.dst.RestartMode(ctx, "immediate", 0))
	dst, err = p.dst.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer dst.Close(ctx)
	require.NoError(t, compare(ctx, src, dst, "acct", []string{"id", "balance"}))
	after, err := bookkeeping.AppliedPosition(ctx, dst, p.s.Name)
	require.NoError(t, err)
	require.Equal(t, before, after, "the destination's position went back in the crash")
}
