package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// Search attributes of a task (keywords, never secrets), for `skein list --phase` and the UI's
// filters. The dev server of `make up` and the test harness register them; the worker registers
// them where it may.
var (
	AttrPhase       = temporal.NewSearchAttributeKeyKeyword("SkeinPhase")
	AttrSource      = temporal.NewSearchAttributeKeyKeyword("SkeinSource")
	AttrDestination = temporal.NewSearchAttributeKeyKeyword("SkeinDestination")
)

// SearchAttributeNames are the attributes a namespace needs, all of type Keyword.
var SearchAttributeNames = []string{AttrPhase.GetName(), AttrSource.GetName(), AttrDestination.GetName()}

// publishSearchAttributes keeps the task's search attributes current: source and destination
// once, the phase whenever it changes. Where the namespace lacks them (checked once, recorded in
// the history), it does nothing: an unknown attribute would fail every workflow task.
func (w *task) publishSearchAttributes(ctx workflow.Context) {
	// Tasks started before search attributes existed go on without them.
	if workflow.GetVersion(ctx, "search-attributes", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 2},
	})
	var ok bool
	if err := workflow.ExecuteLocalActivity(lctx, api.ActivitySearchAttributesAvailable, SearchAttributeNames).Get(ctx, &ok); err != nil || !ok {
		workflow.GetLogger(ctx).Warn("search attributes SkeinPhase, SkeinSource, SkeinDestination are not registered (or payloads are encrypted): not published")
		return
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx,
		AttrSource.ValueSet(w.spec.Source.Describe()),
		AttrDestination.ValueSet(w.spec.Destination.Describe()))
	workflow.Go(ctx, func(ctx workflow.Context) {
		published := ""
		for {
			if err := workflow.Await(ctx, func() bool { return w.status.Phase != published }); err != nil {
				return
			}
			published = w.status.Phase
			_ = workflow.UpsertTypedSearchAttributes(ctx, AttrPhase.ValueSet(published))
		}
	})
}
