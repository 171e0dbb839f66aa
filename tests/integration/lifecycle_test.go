package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// TestContinueAsNewUnderLoad runs incremental with a tiny history threshold, so the task continues
// as new every few seconds while the source keeps writing and pause/resume signals arrive; no
// change and no signal may be lost.
func TestContinueAsNewUnderLoad(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)

	c := startWorker(t, t.TempDir())
	s := shopSpec("it-can", srcPG, dstPG)
	s.Verify.Mode = "count"
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{HistoryLimit: 40, ApplyReportEvery: 200 * time.Millisecond}})
	firstRun := run.GetRunID()
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	write := func(n int, tag string) {
		for i := 0; i < n; i++ {
			_, err := src.Exec(ctx, `INSERT INTO shop.orders (customer_id, amount, big) VALUES ($1, $2, $3)`, 1+i%100, i, fmt.Sprintf("%s %d", tag, i))
			require.NoError(t, err)
			_, err = src.Exec(ctx, `UPDATE shop.customers SET note = $1 WHERE id = $2`, tag, 1+i%500)
			require.NoError(t, err)
			time.Sleep(40 * time.Millisecond)
		}
	}
	write(100, "before pause")
	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalPause, nil))
	waitPhase(t, c, run.GetID(), api.PhasePaused, time.Minute)
	write(50, "while paused")
	// Paused means no writes: the destination stays behind.
	require.Error(t, compareAll(ctx, src, dst, shopChecks))
	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalResume, nil))
	write(100, "after resume")
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })

	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), "")
	require.NoError(t, err)
	require.NotEqual(t, firstRun, desc.WorkflowExecutionInfo.Execution.RunId, "the task continued as new")
	st := status(t, c, run.GetID())
	require.Equal(t, api.PhaseIncremental, st.Phase)
	require.Len(t, st.Tables, 4, "table progress survives continue-as-new")

	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalRelease, nil))
	require.NoError(t, c.GetWorkflow(ctx, run.GetID(), "").Get(ctx, nil))
	recordHistory(t, c, run.GetID(), "continued-run-pause-resume-release")
	var n int
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'skein_it_can'`).Scan(&n))
	require.Zero(t, n)
}

// TestDestinationOutageRecovers stops the destination while changes stream: the task shows a
// connection retry, and once the server is back every change arrives, exactly once.
func TestDestinationOutageRecovers(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, _ := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	run := startTask(t, c, shopSpec("it-outage", srcPG, dstPG), nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	stopped := make(chan error, 1)
	go func() { stopped <- dstPG.Restart(ctx, 8*time.Second) }()
	time.Sleep(time.Second)
	for i := 0; i < 50; i++ {
		_, err := src.Exec(ctx, `UPDATE shop.orders SET amount = amount + 1 WHERE id = $1`, 1+i%10)
		require.NoError(t, err)
		_, err = src.Exec(ctx, `INSERT INTO shop.customers (name) VALUES ($1)`, fmt.Sprint("during outage ", i))
		require.NoError(t, err)
	}
	st := waitPhase(t, c, run.GetID(), api.PhaseRetrying, time.Minute)
	require.Equal(t, "connection", st.Retry.Class, "%+v", st.Retry)
	require.Equal(t, 720, st.Retry.WindowMinutes)
	require.GreaterOrEqual(t, st.Retry.Attempts, 1)
	require.NotEmpty(t, st.Retry.Since)
	require.NotEmpty(t, st.LastError)
	require.NoError(t, <-stopped)

	dst, err := dstPG.Connect(ctx, "target")
	require.NoError(t, err)
	defer dst.Close(ctx)
	testharness.Eventually(t, 2*time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	testharness.Eventually(t, 30*time.Second, func() error {
		if st := status(t, c, run.GetID()); st.Phase != api.PhaseIncremental || st.Retry.Attempts != 0 {
			return fmt.Errorf("still %s, retry %+v", st.Phase, st.Retry)
		}
		return nil
	})
}

// TestQuietSelectionKeepsSlotAndLagCurrent writes only to a table outside the selection: Skein's
// heartbeats into the source WAL keep the slot's confirmed position moving (the source keeps no
// WAL for the task) and the lag in seconds small, though no selected table changes.
func TestQuietSelectionKeepsSlotAndLagCurrent(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, _ := shopPair(t, true)
	testharness.Exec(t, src, `CREATE TABLE shop.noise (id bigserial PRIMARY KEY, pad text)`)
	c := startWorker(t, t.TempDir())
	run := startTask(t, c, shopSpec("it-quiet", srcPG, dstPG), nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	writer, err := srcPG.Connect(ctx, "shop")
	require.NoError(t, err)
	defer writer.Close(ctx)
	slotFlush := func() pglogrepl.LSN {
		st, err := source.Slot(ctx, src, "skein_it_quiet")
		require.NoError(t, err)
		require.True(t, st.Exists)
		return pglogrepl.LSN(st.ConfirmedFlush)
	}
	// slotPassesSource waits until the slot has confirmed the source's position now.
	slotPassesSource := func(timeout time.Duration) {
		cur, err := source.CurrentWAL(ctx, src)
		require.NoError(t, err)
		testharness.Eventually(t, timeout, func() error {
			if f := slotFlush(); f < cur {
				return fmt.Errorf("slot confirmed %s, source was at %s", f, cur)
			}
			return nil
		})
	}
	deadline := time.Now().Add(15 * time.Second)
	var checked int
	for time.Now().Before(deadline) {
		_, err := writer.Exec(ctx, `INSERT INTO shop.noise (pad) SELECT repeat('x', 200) FROM generate_series(1, 100)`)
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
		if time.Until(deadline) < 5*time.Second && checked == 0 {
			// Ten seconds into the writes, the selection has been quiet for longer than that.
			slotPassesSource(10 * time.Second)
			st := status(t, c, run.GetID())
			require.Less(t, st.LagSeconds, 5.0, "lag of a quiet selection while the database writes: %+v", st)
			checked++
		}
	}
	require.Equal(t, 1, checked)
	slotPassesSource(15 * time.Second)
}

// TestSignalsSurviveContinueAsNew sends pause, resume, modify-objects and release many times to a
// task that continues as new every few seconds (a history limit of 40 events) while changes
// stream: each one takes effect, none is lost with a run that ends, and the data stays equal.
func TestSignalsSurviveContinueAsNew(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	testharness.Exec(t, src, `CREATE TABLE shop.extra (id int PRIMARY KEY, v text);
INSERT INTO shop.extra SELECT i, 'v' || i FROM generate_series(1, 200) i`)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-can-signals", srcPG, dstPG)
	s.Verify.Mode = spec.VerifyCount
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{HistoryLimit: 40, ApplyReportEvery: 100 * time.Millisecond}})
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	stopWriter := startWriter(t, srcPG, 20*time.Millisecond, func(i int) []string {
		return []string{
			fmt.Sprintf(`INSERT INTO shop.orders (customer_id, amount) VALUES (%d, %d)`, 1+i%100, i),
			fmt.Sprintf(`UPDATE shop.customers SET note = 'n%d' WHERE id = %d`, i, 1+i%500),
			fmt.Sprintf(`UPDATE shop.extra SET v = 'u%d' WHERE id = %d`, i, 1+i%200),
		}
	})
	defer stopWriter()

	runs := map[string]bool{}
	noteRun := func() {
		desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), "")
		require.NoError(t, err)
		runs[desc.WorkflowExecutionInfo.Execution.RunId] = true
	}
	pauseResume := func(round int) {
		require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalPause, nil))
		waitPhase(t, c, run.GetID(), api.PhasePaused, time.Minute)
		noteRun()
		time.Sleep(time.Duration(200+round*150) * time.Millisecond) // changes pile up on the source
		require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalResume, nil))
		waitPhase(t, c, run.GetID(), api.PhaseIncremental, time.Minute)
		noteRun()
		time.Sleep(time.Duration(300+round*200) * time.Millisecond)
	}
	modify := func(tables []spec.Table) api.ModifyResult {
		objs := []spec.Object{{Schema: "shop", To: "mart", Tables: tables}}
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: run.GetID(), UpdateName: api.UpdateModifyObjects,
			Args: []any{objs}, WaitForStage: client.WorkflowUpdateStageCompleted})
		require.NoError(t, err)
		var res api.ModifyResult
		require.NoError(t, h.Get(ctx, &res))
		noteRun()
		return res
	}
	for round := 0; round < 6; round++ {
		pauseResume(round)
	}
	base := s.Objects[0].Tables
	res := modify(append(slices.Clone(base), spec.Table{Name: "extra"}))
	require.Equal(t, []string{"shop.extra"}, res.Added)
	for round := 0; round < 3; round++ {
		pauseResume(round)
	}
	res = modify(base[:len(base)-1]) // extra and the last of the shop tables leave
	require.Len(t, res.Removed, 2, "%+v", res)
	pauseResume(0)
	stopWriter()

	var kept []tableCheck
	for _, tc := range shopChecks {
		if tc.src.Name != base[len(base)-1].Name {
			kept = append(kept, tc)
		}
	}
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, kept) })
	// The removed extra table holds what streamed until it left: at least its load.
	var n int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM mart.extra`).Scan(&n))
	require.Equal(t, 200, n)
	require.GreaterOrEqual(t, len(runs), 4, "the task continued as new between the signals")

	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalRelease, nil))
	relCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, c.GetWorkflow(relCtx, run.GetID(), "").Get(relCtx, nil))
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'skein%'`).Scan(&n))
	require.Zero(t, n, "release ended the task and dropped its slot")
}
