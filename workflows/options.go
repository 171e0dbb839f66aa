package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// Activity option presets. The task's retries are its own (task.call, with the spec's retry
// windows): these say how long one attempt may take and how often it must heartbeat.
var (
	// stepOptions: a step of minutes that heartbeats (precheck, resolving tables, the publication,
	// pre-data schema, a snapshot, a reset).
	stepOptions = workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Minute, HeartbeatTimeout: time.Minute}
	// longStepOptions: a step that may take hours and heartbeats (the load, post-data schema,
	// verification after the load).
	longStepOptions = workflow.ActivityOptions{StartToCloseTimeout: 24 * time.Hour, HeartbeatTimeout: time.Minute}
)
