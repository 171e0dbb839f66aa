package workflows

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/temporalx"
)

// TestReplayRecordedHistories replays histories recorded from real runs (testdata/, written by
// the integration tests with SKEIN_RECORD_HISTORIES=1). A workflow change that would break tasks
// already running fails here: guard it with workflow.GetVersion instead.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in workflows/testdata")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: temporalx.DataConverter()})
			require.NoError(t, err)
			Register(r)
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(temporalx.NewZapLogger(zap.NewNop()), f))
		})
	}
}
