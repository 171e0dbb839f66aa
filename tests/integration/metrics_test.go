package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestWorkerMetrics scrapes a worker process's Prometheus endpoint during a task: the phase, the
// load's rows and chunks, the changes applied and the lag are there and move; /healthz and
// /readyz answer.
func TestWorkerMetrics(t *testing.T) {
	parallel(t)
	port, err := testharness.FreePort()
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProcessTask(t, "it-metrics", `CREATE TABLE shop.counted (id int PRIMARY KEY)`, "counted", nil, "SKEIN_METRICS_ADDR="+addr)
	waitPhase(t, p.c, p.run.GetID(), api.PhaseIncremental, 3*time.Minute)

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// value finds the series of metric with the labels (among others: the SDK adds its own).
	value := func(text, metric string, labels ...string) (float64, bool) {
		for _, line := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(metric)+`\{.*$`).FindAllString(text, -1) {
			all := true
			for i := 0; i+1 < len(labels); i += 2 {
				all = all && regexp.MustCompile(`[{,]`+labels[i]+`="`+regexp.QuoteMeta(labels[i+1])+`"`).MatchString(line)
			}
			if all {
				v, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
				return v, err == nil
			}
		}
		return 0, false
	}
	code, _ := get("/healthz")
	require.Equal(t, http.StatusOK, code)
	code, body := get("/readyz")
	require.Equal(t, http.StatusOK, code, body)

	testharness.Eventually(t, time.Minute, func() error {
		_, text := get("/metrics")
		if v, ok := value(text, "skein_task_phase", "phase", "incremental", "task", "it-metrics"); !ok || v != 1 {
			return fmt.Errorf("phase incremental: %v (present %v)", v, ok)
		}
		if v, ok := value(text, "skein_chunks_done", "table", "shop.orders", "task", "it-metrics"); !ok || v < 1 {
			return fmt.Errorf("chunks done of shop.orders: %v", v)
		}
		if v, ok := value(text, "skein_rows_copied", "table", "shop.orders", "task", "it-metrics"); !ok || v < 20000 {
			return fmt.Errorf("rows copied of shop.orders: %v", v)
		}
		if v, ok := value(text, "skein_task_phase", "phase", "full_load", "task", "it-metrics"); !ok || v != 0 {
			return fmt.Errorf("the earlier phase: %v (present %v)", v, ok)
		}
		if _, ok := value(text, "skein_apply_lag_bytes", "task", "it-metrics"); !ok {
			return fmt.Errorf("no lag gauge")
		}
		if !regexp.MustCompile(`(?m)^temporal_`).MatchString(text) {
			return fmt.Errorf("no SDK metrics")
		}
		return nil
	})
	testharness.Exec(t, p.src, `INSERT INTO shop.counted SELECT generate_series(1, 300)`)
	testharness.Exec(t, p.src, `UPDATE shop.counted SET id = id + 1000 WHERE id <= 10`)
	testharness.Eventually(t, time.Minute, func() error {
		_, text := get("/metrics")
		ins, _ := value(text, "skein_changes_applied_total", "kind", "insert", "task", "it-metrics")
		upd, _ := value(text, "skein_changes_applied_total", "kind", "update", "task", "it-metrics")
		if ins < 300 || upd < 10 {
			return fmt.Errorf("changes applied: %v inserts, %v updates", ins, upd)
		}
		return nil
	})

	// A verification that repairs a lost row: compared, found, repaired, and clean after that.
	testharness.Exec(t, p.dst, `DELETE FROM mart.counted WHERE id = 100`)
	run, err := p.c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: api.TaskQueue, ID: api.VerifyWorkflowID(p.run.GetID())},
		api.VerifyWorkflowName, api.VerifyRequest{Task: p.run.GetID(), Repair: true})
	require.NoError(t, err)
	var rep api.VerifyReport
	require.NoError(t, run.Get(context.Background(), &rep))
	require.True(t, rep.Repaired, "%+v", rep)
	testharness.Eventually(t, time.Minute, func() error {
		_, text := get("/metrics")
		for _, m := range []struct {
			metric string
			labels []string
		}{
			{"skein_verify_rows_compared_total", []string{"table", "shop.counted"}},
			{"skein_verify_differences_found_total", []string{"table", "shop.counted"}},
			{"skein_verify_rows_repaired_total", []string{"table", "shop.counted", "op", "inserted"}},
			{"skein_verify_last_clean_timestamp", nil},
		} {
			if v, ok := value(text, m.metric, append(m.labels, "task", "it-metrics")...); !ok || v < 1 {
				return fmt.Errorf("%s %v: %v (present %v)", m.metric, m.labels, v, ok)
			}
		}
		return nil
	})
}
