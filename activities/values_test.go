package activities

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

// failingRow is the error a destination gives for a row its CHECK constraint refuses, with the
// DETAIL added as the change stream adds it.
func failingRow() error {
	pgErr := &pgconn.PgError{
		Severity: "ERROR", Code: "23514", ConstraintName: "ssn_not_marked",
		Message: `new row for relation "people" violates check constraint "ssn_not_marked"`,
		Detail:  "Failing row contains (7, SSN-MARKER).",
	}
	return fmt.Errorf("apply insert into hr.people (id=7): %w (%s)", pgErr, pgErr.Detail)
}

// TestShowRowValues: an activity's error is redacted unless the spec in its input (the input
// itself, or a field of it) says show_row_values; the worker's interceptor decides.
func TestShowRowValues(t *testing.T) {
	shown := spec.Spec{Name: "t", ShowRowValues: true}
	hidden := spec.Spec{Name: "t"}
	cases := []struct {
		name     string
		activity any // takes the input's type, as Skein's activities do
		input    any
		shown    bool
	}{
		{"spec shown", failsWith[spec.Spec], shown, true},
		{"spec hidden", failsWith[spec.Spec], hidden, false},
		{"pointer to spec", failsWith[*spec.Spec], &shown, true},
		{"apply input", failsWith[ApplyInput], ApplyInput{Spec: shown}, true},
		{"apply input hidden", failsWith[ApplyInput], ApplyInput{Spec: hidden}, false},
		{"chunk input", failsWith[CopyChunkInput], CopyChunkInput{Task: api.CopyTaskOf(shown)}, true},
		{"chunk input hidden", failsWith[CopyChunkInput], CopyChunkInput{Task: api.CopyTaskOf(hidden)}, false},
		{"chunk batch and build", failsWith[CopyAndBuildInput], CopyAndBuildInput{CopyChunksInput: CopyChunksInput{Task: api.CopyTaskOf(shown)}}, true},
		{"schema input", failsWith[SchemaInput], SchemaInput{Spec: shown}, true},
		{"no spec at all", failsWith[string], "task-name", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var suite testsuite.WorkflowTestSuite
			env := suite.NewTestActivityEnvironment()
			env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&RowValuesInterceptor{}}})
			env.RegisterActivityWithOptions(tc.activity, activity.RegisterOptions{Name: "Fails"})
			_, err := env.ExecuteActivity("Fails", tc.input)
			require.Error(t, err)
			require.Contains(t, err.Error(), "ssn_not_marked", "the constraint is always named")
			require.Contains(t, err.Error(), "id=7", "the key is always named")
			if tc.shown {
				require.Contains(t, err.Error(), "SSN-MARKER")
			} else {
				require.NotContains(t, err.Error(), "SSN-MARKER")
				require.Contains(t, err.Error(), "(value redacted)")
			}
		})
	}
}

func failsWith[T any](ctx context.Context, _ T) error { return classify(ctx, failingRow()) }
