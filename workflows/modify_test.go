package workflows

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
)

func TestDiffTables(t *testing.T) {
	tm := func(name, to string) spec.TableMap {
		return spec.TableMap{Source: spec.QName{Schema: "s", Name: name}, Dest: spec.QName{Schema: "s", Name: to}, Operations: spec.AllOperations}
	}
	tests := []struct {
		name             string
		before, after    []spec.TableMap
		added, removed   []string
		wantErrSubstring string
	}{
		{"nothing changes", []spec.TableMap{tm("a", "a")}, []spec.TableMap{tm("a", "a")}, nil, nil, ""},
		{"add and remove", []spec.TableMap{tm("a", "a"), tm("b", "b")}, []spec.TableMap{tm("a", "a"), tm("c", "c")}, []string{"s.c"}, []string{"s.b"}, ""},
		{"a changed mapping is refused", []spec.TableMap{tm("a", "a")}, []spec.TableMap{tm("a", "a2")}, nil, nil, "table s.a: its mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, removed, err := diffTables(tt.before, tt.after)
			if tt.wantErrSubstring != "" {
				require.ErrorContains(t, err, tt.wantErrSubstring)
				return
			}
			require.NoError(t, err)
			names := func(ts []spec.TableMap) []string {
				var out []string
				for _, t := range ts {
					out = append(out, t.Source.String())
				}
				return out
			}
			require.Equal(t, tt.added, names(added))
			require.Equal(t, tt.removed, names(removed))
		})
	}
}

// updateResult collects what an update's callbacks were told.
type updateResult struct {
	rejected, err error
	result        api.ModifyResult
	done          bool
}

func (u *updateResult) Accept() {}
func (u *updateResult) Reject(err error) {
	u.rejected = err
	u.done = true
}
func (u *updateResult) Complete(success any, err error) {
	if r, ok := success.(api.ModifyResult); ok {
		u.result = r
	}
	u.err = err
	u.done = true
}

// TestModifyRejectsWithoutChangingTheTask: modify-objects sent as a client sends it (JSON): a list
// with an unknown field is rejected by the validator naming the field; a list naming a table the
// source lacks returns the error, and the task goes on streaming with its status as it was; a
// good list after both is carried out (nothing was left "in progress").
func TestModifyRejectsWithoutChangingTheTask(t *testing.T) {
	var env *testsuite.TestWorkflowEnvironment
	var unknown, missing, good updateResult
	var during api.Status
	resolves := 0
	env = newEnv(t, map[string]any{
		"ResolveTables": func(_ context.Context, s spec.Spec) ([]spec.TableMap, error) {
			resolves++
			if resolves > 1 && len(s.Objects[0].Tables) > 0 && s.Objects[0].Tables[0].Name == "no_such_table" {
				return nil, temporal.NewNonRetryableApplicationError(`invalid spec: objects[0].tables[0].name: table "public"."no_such_table" does not exist on the source`, string(api.Fatal), nil)
			}
			return []spec.TableMap{tItems, tOrders}, nil
		},
		"Apply": applyUntilCancelled(func(run int) {
			if run > 1 {
				return
			}
			env.RegisterDelayedCallback(func() {
				env.UpdateWorkflow(api.UpdateModifyObjects, "1", &unknown, json.RawMessage(`[{"schema":"public","tables":[{"name":"orders","colums":{"a":"b"}}]}]`))
				env.UpdateWorkflow(api.UpdateModifyObjects, "2", &missing, json.RawMessage(`[{"schema":"public","tables":[{"name":"no_such_table"}]}]`))
			}, time.Second)
			env.RegisterDelayedCallback(func() {
				during = queryStatus(t, env)
				env.UpdateWorkflow(api.UpdateModifyObjects, "3", &good, json.RawMessage(`[{"schema":"public"}]`))
			}, 2*time.Second)
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(api.SignalRelease, nil) }, 3*time.Second)
		}),
	})
	env.ExecuteWorkflow(SyncTask, testSpec(), nil)
	require.NoError(t, env.GetWorkflowError())

	require.True(t, unknown.done)
	require.ErrorContains(t, unknown.rejected, "objects[0].tables[0].colums: unknown field")
	require.True(t, missing.done)
	require.Nil(t, missing.rejected, "accepted: the source decides")
	require.ErrorContains(t, missing.err, `"no_such_table" does not exist on the source`)
	require.Equal(t, api.PhaseIncremental, during.Phase, "the task streams on")
	require.Empty(t, during.LastError)
	require.Equal(t, api.RetryState{}, during.Retry)
	require.True(t, good.done)
	require.NoError(t, good.err, "no modify is left in progress")
	require.Equal(t, api.ModifyResult{}, good.result, "the same tables: nothing added or removed")
	env.AssertActivityNumberOfCalls(t, "ResolveTables", 3)
}

// TestSyncTaskNamesWhatDoesNotFitItsInput: SyncTask started with JSON as the Temporal CLI sends
// it fails at once naming each field that is unknown or of the wrong type.
func TestSyncTaskNamesWhatDoesNotFitItsInput(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", `{"name":"t","conflict_mod":"ignore","source":{"host":"h","database":"d","user":"u"},"destination":{"host":"h","database":"d","user":"u"},"objects":[{"schema":"public"}]}`,
			"conflict_mod: unknown field"},
		{"wrong type", `{"name":"t","source":{"host":"h","port":"x","database":"d","user":"u"},"destination":{"host":"h","database":"d","user":"u"},"objects":[{"schema":"public"}]}`,
			"source.port: expected a whole number, got a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, nil)
			env.ExecuteWorkflow(api.WorkflowName, json.RawMessage(tc.doc))
			var appErr *temporal.ApplicationError
			require.ErrorAs(t, env.GetWorkflowError(), &appErr)
			require.Equal(t, "invalid_spec", appErr.Type())
			require.Contains(t, appErr.Message(), tc.want)
			env.AssertActivityNumberOfCalls(t, "Precheck", 0)
		})
	}
}
