package temporalx

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/spec"
)

// ErrNoTask is returned for a task id without a workflow.
var ErrNoTask = errors.New("no such task")

// TaskSpec reads the spec a task was started (or continued) with from its latest run's history:
// the first argument of its first event.
func TaskSpec(ctx context.Context, c client.Client, id string) (spec.Spec, error) {
	var s spec.Spec
	iter := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !iter.HasNext() {
		return s, fmt.Errorf("task %s: no history", id)
	}
	ev, err := iter.Next()
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return s, fmt.Errorf("task %s in namespace %s: %w", id, Namespace(), ErrNoTask)
		}
		return s, fmt.Errorf("task %s: read history: %w", id, err)
	}
	started := ev.GetWorkflowExecutionStartedEventAttributes()
	if started == nil || len(started.GetInput().GetPayloads()) == 0 {
		return s, fmt.Errorf("task %s: its history has no spec", id)
	}
	if err := DataConverter().FromPayload(started.GetInput().GetPayloads()[0], &s); err != nil {
		return s, fmt.Errorf("task %s: decode spec: %w", id, err)
	}
	return s, nil
}
