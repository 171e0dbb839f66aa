package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// webhook collects the alert events POSTed to it.
type webhook struct {
	mu     sync.Mutex
	events []activities.AlertEvent
	srv    *httptest.Server
}

func newWebhook(t *testing.T) *webhook {
	h := &webhook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev activities.AlertEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *webhook) find(kind string) (activities.AlertEvent, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range h.events {
		if ev.Kind == kind {
			return ev, true
		}
	}
	return activities.AlertEvent{}, false
}

// TestLagAlertPauseAndLongOutage: a throttled apply falls behind and the latency alert reaches
// the webhook; a paused task shows its lag growing; a destination outage longer than the
// connection window fails the task with the reason (and a failure alert), and resume picks up
// where apply stopped, losing nothing.
func TestLagAlertPauseAndLongOutage(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	hook := newWebhook(t)
	srcPG, dstPG, src, _ := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-alerts", srcPG, dstPG)
	s.Verify.Mode = spec.VerifyCount
	s.Alerts = spec.Alerts{LatencySeconds: 1, WebhookURL: hook.srv.URL + "/hook"}
	s.Throttle.Incremental.RowsPerSecond = 40
	s.Retry = spec.Retry{ConnectionMinutes: 10, OtherMinutes: 5}
	// Retry windows count in seconds here: 10 "minutes" are 10 seconds.
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 200 * time.Millisecond, RetryUnit: time.Second}})
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	t.Run("latency alert", func(t *testing.T) {
		for i := 0; i < 300; i++ {
			testharness.Exec(t, src, fmt.Sprintf(`UPDATE shop.customers SET note = 'lag %d' WHERE id = %d`, i, 1+i))
		}
		testharness.Eventually(t, time.Minute, func() error {
			if _, ok := hook.find(activities.AlertLatency); !ok {
				return fmt.Errorf("no latency alert yet; status lag %.1fs", status(t, c, run.GetID()).LagSeconds)
			}
			return nil
		})
		ev, _ := hook.find(activities.AlertLatency)
		require.Equal(t, "it-alerts", ev.Task)
		require.Greater(t, ev.LagSeconds, 1.0)
		require.Contains(t, ev.Message, "alerts.latency_seconds")
	})

	t.Run("paused: the lag grows in status", func(t *testing.T) {
		require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalPause, nil))
		waitPhase(t, c, run.GetID(), api.PhasePaused, time.Minute)
		testharness.Exec(t, src, `INSERT INTO shop.customers (name) SELECT 'paused ' || i FROM generate_series(1, 500) i`)
		testharness.Eventually(t, 30*time.Second, func() error {
			st := status(t, c, run.GetID())
			if st.Phase != api.PhasePaused || st.LagBytes < 10000 || st.LagSeconds <= 0 {
				return fmt.Errorf("phase %s lag %d bytes %.1fs", st.Phase, st.LagBytes, st.LagSeconds)
			}
			return nil
		})
		require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalResume, nil))
	})

	dst, err := dstPG.Connect(ctx, "target")
	require.NoError(t, err)
	testharness.Eventually(t, 2*time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	dst.Close(ctx)

	t.Run("an outage longer than the window fails the task with the reason; resume recovers", func(t *testing.T) {
		restarted := make(chan error, 1)
		go func() { restarted <- dstPG.Restart(ctx, 25*time.Second) }()
		time.Sleep(time.Second)
		testharness.Exec(t, src, `UPDATE shop.orders SET amount = amount + 1 WHERE id <= 10; INSERT INTO shop.customers (name) VALUES ('during outage')`)
		st := waitPhase(t, c, run.GetID(), api.PhaseFailed, time.Minute)
		require.Equal(t, "connection", st.Retry.Class)
		require.Equal(t, 10, st.Retry.WindowMinutes)
		require.Contains(t, st.LastError, "127.0.0.1")
		testharness.Eventually(t, 30*time.Second, func() error {
			ev, ok := hook.find(activities.AlertFailed)
			if !ok {
				return fmt.Errorf("no failure alert yet")
			}
			if !strings.Contains(ev.Message, "127.0.0.1") || ev.Phase != api.PhaseFailed {
				return fmt.Errorf("failure alert %+v", ev)
			}
			return nil
		})
		require.NoError(t, <-restarted)
		time.Sleep(time.Second)
		require.Equal(t, api.PhaseFailed, status(t, c, run.GetID()).Phase, "a failed task waits for resume")
		require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalResume, nil))
		dst, err := dstPG.Connect(ctx, "target")
		require.NoError(t, err)
		defer dst.Close(ctx)
		testharness.Eventually(t, 2*time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
		waitPhase(t, c, run.GetID(), api.PhaseIncremental, time.Minute)
	})

	t.Run("an apply error fails the task after the other-errors window, naming table, key and statement", func(t *testing.T) {
		dst, err := dstPG.Connect(ctx, "target")
		require.NoError(t, err)
		defer dst.Close(ctx)
		testharness.Exec(t, dst, `INSERT INTO mart.clients (id, name) VALUES (999999, 'in the way')`)
		testharness.Exec(t, src, `INSERT INTO shop.customers (id, name) VALUES (999999, 'blocked')`)
		st := waitPhase(t, c, run.GetID(), api.PhaseFailed, time.Minute)
		require.Equal(t, "other", st.Retry.Class)
		// One row: a single-row INSERT in the pipeline (a longer run is a COPY).
		for _, want := range []string{"mart.clients", "id=999999", `INSERT INTO "mart"."clients"`, "already exists"} {
			require.Contains(t, st.LastError, want)
		}
		testharness.Exec(t, dst, `DELETE FROM mart.clients WHERE id = 999999`)
		require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalResume, nil))
		testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	})

	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalRelease, nil))
	require.NoError(t, c.GetWorkflow(ctx, run.GetID(), "").Get(ctx, nil))
	recordHistory(t, c, run.GetID(), "alerts-pause-failed-resume-release")
}
