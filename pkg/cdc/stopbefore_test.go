package cdc_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/dbconn"
)

// TestStopBeforeMeetsTheSnapshot: a stream with StopBefore at a temporary slot's consistent
// point, while the source keeps committing, ends with the destination exactly where the slot's
// exported snapshot sees the source: every transaction committed before the point applied, none
// after it (the repair's barrier). Into both destinations, with one lane and with three.
func TestStopBeforeMeetsTheSnapshot(t *testing.T) {
	for _, dest := range destinations {
		for _, lanes := range []int{1, 3} {
			t.Run(fmt.Sprint(dest, ", ", lanes, " lanes"), func(t *testing.T) { testStopBeforeMeetsTheSnapshot(t, dest, lanes) })
		}
	}
}

func testStopBeforeMeetsTheSnapshot(t *testing.T, dest string, lanes int) {
	ctx := context.Background()
	p, src, dst := setupInto(t, dest, `CREATE TABLE public.acct (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO public.acct SELECT i, 1000 FROM generate_series(1, 200) i;`)
	p.createAndLoad(t, src, dst)

	// A writer commits small transactions throughout: updates (one applied too many shows as a
	// wrong balance) and inserts.
	writer, err := p.src.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer writer.Close(ctx)
	var wg sync.WaitGroup
	stopWriting := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stopWriting:
				return
			default:
			}
			if _, err := writer.Exec(ctx, `UPDATE public.acct SET balance = balance + 1 WHERE id = $1`, 1+i%200); err != nil {
				t.Error(err)
				return
			}
			if _, err := writer.Exec(ctx, `INSERT INTO public.acct VALUES ($1::int, $1::int)`, 1000+i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stopWriting); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)

	// The barrier: a temporary slot's exported snapshot and its consistent point.
	repl, err := dbconn.Opener{}.ConnectReplication(ctx, p.s.Source)
	require.NoError(t, err)
	defer repl.Close(ctx)
	snap, err := source.CreateTemporarySlot(ctx, repl, "stop_before_test")
	require.NoError(t, err)
	at, err := pglogrepl.ParseLSN(snap.ConsistentPoint)
	require.NoError(t, err)
	reader, err := p.src.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer reader.Close(ctx)
	tx, err := catalog.BeginRead(ctx, reader, snap.SnapshotName)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	var want string
	require.NoError(t, tx.QueryRow(ctx, `SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM public.acct`).Scan(&want))
	time.Sleep(300 * time.Millisecond) // more commits after the point

	var mu sync.Mutex
	var last cdc.Progress
	done, cancel, closeConns := p.startStream(t, func(o *cdc.StreamOptions) {
		o.StopBefore = at
		o.OnProgress = func(pr cdc.Progress) { mu.Lock(); last = pr; mu.Unlock() }
		if lanes > 1 {
			p.inLanes(o, lanes)
		}
	})
	defer closeConns()
	defer cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "the stream ends cleanly at its stop")
	case <-time.After(time.Minute):
		t.Fatal("the stream did not stop")
	}
	mu.Lock()
	defer mu.Unlock()
	require.True(t, last.ReachedStop)
	require.Less(t, last.AppliedLSN, at)
	var got string
	require.NoError(t, dst.QueryRow(ctx, `SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM public.acct`).Scan(&got))
	require.Equal(t, want, got, "the destination is where the snapshot sees the source")
}
