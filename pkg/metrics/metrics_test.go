package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// TestHandlerExportsEverySeries: counters, gauges and timers under tags that differ between the
// series of one metric come out as one family with the union of the label names; /readyz says
// what the ready check says.
func TestHandlerExportsEverySeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHandler(reg)
	task := h.WithTags(map[string]string{"task": "a"})
	task.Counter("skein_changes_applied_total").Inc(3)
	task.WithTags(map[string]string{"kind": "insert"}).Counter("skein_changes_applied_total").Inc(2)
	task.WithTags(map[string]string{"kind": "insert"}).Counter("skein_changes_applied_total").Inc(5)
	task.Gauge("skein_apply_lag_seconds").Update(1.5)
	task.Gauge("skein_apply_lag_seconds").Update(0.5)
	h.Timer("temporal.request-latency").Record(20 * time.Millisecond)
	var notReady error
	srv, err := Serve("127.0.0.1:0", reg, func(context.Context) error { return notReady })
	require.NoError(t, err)
	defer srv.Close() //nolint:errcheck
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + srv.Addr() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, text := get("/metrics")
	require.Equal(t, http.StatusOK, code, text)
	for _, want := range []string{
		`skein_changes_applied_total{kind="",task="a"} 3`,
		`skein_changes_applied_total{kind="insert",task="a"} 7`,
		`skein_apply_lag_seconds{task="a"} 0.5`,
		`temporal_request_latency_count 1`,
		`temporal_request_latency_bucket{le="0.05"} 1`,
		`go_goroutines`,
	} {
		require.Contains(t, text, want)
	}
	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get("/readyz")
	require.Equal(t, http.StatusOK, code)
	notReady = errors.New("temporal unreachable")
	code, body := get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "temporal unreachable")
}
