package activities

import (
	"time"

	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
)

// WorkerOptions are the worker settings the workflows and activities rely on: sessions (the snapshot holder
// stays on the worker that created the snapshot) and frequent heartbeats (cancellation of the apply
// activity is noticed within seconds).
func WorkerOptions() worker.Options {
	return worker.Options{
		EnableSessionWorker:               true,
		MaxConcurrentSessionExecutionSize: 1000,
		MaxHeartbeatThrottleInterval:      2 * time.Second,
		DefaultHeartbeatThrottleInterval:  2 * time.Second,
		// Row values stay out of errors unless the task's spec says show_row_values.
		Interceptors: []interceptor.WorkerInterceptor{&RowValuesInterceptor{}},
	}
}
