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
	err := FirstInput(ctx, c, id, &s)
	if err != nil && !errors.Is(err, ErrNoTask) {
		err = fmt.Errorf("task %w", err)
	}
	return s, err
}

// FirstInput decodes into the first argument workflow id's latest run was started (or
// continued) with, from its history; a workflow that does not exist is ErrNoTask.
func FirstInput(ctx context.Context, c client.Client, id string, into any) error {
	iter := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	if !iter.HasNext() {
		return fmt.Errorf("%s: no history", id)
	}
	ev, err := iter.Next()
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return fmt.Errorf("task %s in namespace %s: %w", id, Namespace(), ErrNoTask)
		}
		return fmt.Errorf("%s: read history: %w", id, err)
	}
	started := ev.GetWorkflowExecutionStartedEventAttributes()
	if started == nil || len(started.GetInput().GetPayloads()) == 0 {
		return fmt.Errorf("%s: its history has no input", id)
	}
	if err := DataConverter().FromPayload(started.GetInput().GetPayloads()[0], into); err != nil {
		return fmt.Errorf("%s: decode its input: %w", id, err)
	}
	return nil
}
