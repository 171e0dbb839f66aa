package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// alert queues an alert for the sender (when alerts are configured).
func (w *task) alert(kind, message string) {
	if !w.spec.Alerts.Enabled() {
		return
	}
	w.alerts = append(w.alerts, api.AlertEvent{Task: w.spec.Name, Kind: kind, Phase: w.status.Phase, Message: message,
		LagSeconds: w.status.LagSeconds, LagBytes: w.status.LagBytes})
}

// checkLatency raises a latency alert when the lag goes above alerts.latency_seconds, once until
// it comes back below.
func (w *task) checkLatency() {
	limit := w.spec.Alerts.LatencySeconds
	if limit <= 0 {
		return
	}
	over := w.status.LagSeconds > float64(limit)
	if over && !w.latencyAlerting {
		w.alert(api.AlertLatency, fmt.Sprintf("apply lag %.1fs is above alerts.latency_seconds (%d)", w.status.LagSeconds, limit))
	}
	w.latencyAlerting = over
}

// sendAlerts sends queued alerts one by one, retrying each; it never blocks the task's work.
func (w *task) sendAlerts(ctx workflow.Context) {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2,
			MaximumInterval: time.Minute, MaximumAttempts: 10},
	})
	for {
		if err := workflow.Await(ctx, func() bool { return len(w.alerts) > 0 }); err != nil {
			return
		}
		ev := w.alerts[0]
		w.alertSending = true
		err := workflow.ExecuteActivity(actx, api.ActivityAlert, api.AlertInput{Event: ev, WebhookURL: w.spec.Alerts.WebhookURL, WebhookURLSecret: w.spec.Alerts.WebhookURLSecret}).Get(ctx, nil)
		w.alerts = w.alerts[1:]
		w.alertSending = false
		if err != nil {
			workflow.GetLogger(ctx).Warn("alert not delivered", "kind", ev.Kind, "error", err)
		}
	}
}

// flushAlerts gives queued alerts up to a minute to go out before the run ends.
func (w *task) flushAlerts(ctx workflow.Context) {
	if len(w.alerts) == 0 && !w.alertSending {
		return
	}
	_, _ = workflow.AwaitWithTimeout(ctx, time.Minute, func() bool { return len(w.alerts) == 0 && !w.alertSending })
}
