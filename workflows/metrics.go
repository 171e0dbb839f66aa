package workflows

import (
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// Skein's own metrics, emitted by the workflow through the worker's metrics handler (the worker
// serves them for Prometheus on SKEIN_METRICS_ADDR, next to the SDK's). The handler is replay
// aware: a history replayed on another worker emits nothing again. Every metric carries the task.
const (
	MetricPhase         = "skein_task_phase"            // gauge, tag phase: 1 for the current phase
	MetricRowsCopied    = "skein_rows_copied"           // gauge, tag table
	MetricBytesCopied   = "skein_bytes_copied"          // gauge, tag table
	MetricChunksDone    = "skein_chunks_done"           // gauge, tag table
	MetricChunksTotal   = "skein_chunks_total"          // gauge, tag table
	MetricChanges       = "skein_changes_applied_total" // counter, tag kind: insert, update, delete, truncate
	MetricLagBytes      = "skein_apply_lag_bytes"       // gauge
	MetricLagSeconds    = "skein_apply_lag_seconds"     // gauge
	MetricRetryAttempts = "skein_retry_attempts"        // gauge, tag class: attempts of the current streak
	MetricSchemaChanges = "skein_schema_changes_total"  // counter, tag outcome: applied, skipped, not_replicated
	MetricVerifyDiffs   = "skein_verify_differences"    // gauge, tag table: rows missing, extra or different
	// Verifications while streaming (skein verify, verify.every_minutes).
	MetricVerifyRows      = "skein_verify_rows_compared_total"     // counter, tag table: source rows compared
	MetricVerifyFound     = "skein_verify_differences_found_total" // counter, tag table
	MetricVerifyRepaired  = "skein_verify_rows_repaired_total"     // counter, tags table, op (deleted, inserted): rows repairs deleted and wrote
	MetricVerifyLastClean = "skein_verify_last_clean_timestamp"    // gauge: Unix time of the last verification that left no difference
)

// taskMetrics emits one task's metrics.
type taskMetrics struct{ h client.MetricsHandler }

func newTaskMetrics(ctx workflow.Context, task string) taskMetrics {
	return taskMetrics{h: workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"task": task})}
}

// phase moves the phase gauge from old to now.
func (m taskMetrics) phase(old, now string) {
	if old != "" && old != now {
		m.h.WithTags(map[string]string{"phase": old}).Gauge(MetricPhase).Update(0)
	}
	m.h.WithTags(map[string]string{"phase": now}).Gauge(MetricPhase).Update(1)
}

// table reports a table's load progress.
func (m taskMetrics) table(ts api.TableStatus) {
	h := m.h.WithTags(map[string]string{"table": ts.Source})
	h.Gauge(MetricRowsCopied).Update(float64(ts.RowsCopied))
	h.Gauge(MetricBytesCopied).Update(float64(ts.BytesCopied))
	h.Gauge(MetricChunksDone).Update(float64(ts.ChunksDone))
	h.Gauge(MetricChunksTotal).Update(float64(ts.Chunks))
}

// applied reports the changes applied since the last report (delta) and the lag.
func (m taskMetrics) applied(delta api.Counts, lagBytes int64, lagSeconds float64) {
	for kind, n := range map[string]int64{"insert": delta.Inserts, "update": delta.Updates, "delete": delta.Deletes, "truncate": delta.Truncates} {
		if n > 0 {
			m.h.WithTags(map[string]string{"kind": kind}).Counter(MetricChanges).Inc(n)
		}
	}
	m.h.Gauge(MetricLagBytes).Update(float64(lagBytes))
	m.h.Gauge(MetricLagSeconds).Update(lagSeconds)
}

// schemaChanges counts schema changes by outcome.
func (m taskMetrics) schemaChanges(outcome string, n int64) {
	if n > 0 {
		m.h.WithTags(map[string]string{"outcome": outcome}).Counter(MetricSchemaChanges).Inc(n)
	}
}

// retry reports the attempts of the current failure streak (0: none).
func (m taskMetrics) retry(class string, attempts int) {
	m.h.WithTags(map[string]string{"class": class}).Gauge(MetricRetryAttempts).Update(float64(attempts))
}

// verified reports each table's differences, at now.
func (m taskMetrics) verified(results []api.TableResult, now time.Time) {
	clean := true
	for _, r := range results {
		h := m.h.WithTags(map[string]string{"table": r.Source})
		found := r.Missing + r.Extra + r.Different + r.Changing
		h.Gauge(MetricVerifyDiffs).Update(float64(r.Missing + r.Extra + r.Different))
		h.Counter(MetricVerifyRows).Inc(r.SourceRows)
		if found > 0 {
			h.Counter(MetricVerifyFound).Inc(found)
		}
		if r.Repair != nil {
			for _, c := range []struct {
				op string
				n  int64
			}{{"deleted", r.Repair.Deleted}, {"inserted", r.Repair.Inserted}} {
				if c.n > 0 {
					h.WithTags(map[string]string{"op": c.op}).Counter(MetricVerifyRepaired).Inc(c.n)
				}
			}
		}
		clean = clean && (r.Equal || (r.Repair != nil && !r.Repair.Pending && r.Repair.Refused == ""))
	}
	if clean {
		m.h.Gauge(MetricVerifyLastClean).Update(float64(now.Unix()))
	}
}
