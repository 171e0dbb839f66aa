package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/secrets"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/workflows"
)

// TestRowValuesAndWebhookTokensStayOut: an apply error caused by a row holding a marker value
// names the table, the constraint and the row's key, but the marker is in none of the workflow
// history, the status, the worker's log and the failure webhook's body; the webhook URL, read
// from a secret, carries a token that is in none of them either.
func TestRowValuesAndWebhookTokensStayOut(t *testing.T) {
	const marker, token = "SSN-MARKER-123-45-6789", "TOKEN-MARKER-s3cr3t"
	ctx := context.Background()
	hook := newWebhook(t)
	srcPG, dstPG, src, dst := clusterPair(t, true, "people", `
CREATE SCHEMA hr;
CREATE TABLE hr.people (id int PRIMARY KEY, ssn text);
INSERT INTO hr.people VALUES (1, 'ordinary');`)

	secretsDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(secretsDir, "hook"), []byte(hook.srv.URL+"/alerts?token="+token+"\n"), 0o600))
	logs, observed := observer.New(zap.DebugLevel)
	c := devServer.Client()
	w := worker.New(c, workflows.TaskQueue, workflows.WorkerOptions())
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{Open: dbconn.Opener{Secrets: secrets.Resolver{Dir: secretsDir}}, Log: zap.New(logs), Client: c})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	s := spec.Spec{Name: "it-secure", Source: srcPG.Endpoint("people"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "hr"}},
		Alerts:  spec.Alerts{WebhookURLSecret: "hook"},
		Retry:   spec.Retry{ConnectionMinutes: 10, OtherMinutes: 2}}
	run := startTask(t, c, s, &workflows.Carry{ApplyReportEvery: 200 * time.Millisecond, RetryUnit: time.Second})
	waitPhase(t, c, run.GetID(), workflows.PhaseIncremental, 3*time.Minute)
	// The destination refuses the value the source accepts.
	mustExec(t, dst, `ALTER TABLE hr.people ADD CONSTRAINT ssn_not_marked CHECK (ssn NOT LIKE '%MARKER%')`)
	mustExec(t, src, fmt.Sprintf(`INSERT INTO hr.people VALUES (7, '%s')`, marker))

	st := waitPhase(t, c, run.GetID(), workflows.PhaseFailed, 2*time.Minute)
	require.Contains(t, st.LastError, "hr.people")
	require.Contains(t, st.LastError, "id=7", "the key is named")
	require.Contains(t, st.LastError, `"ssn_not_marked"`, "the constraint is named")
	require.Contains(t, st.LastError, "Failing row contains (value redacted)")
	eventually(t, time.Minute, func() error {
		if _, ok := hook.find(activities.AlertFailed); !ok {
			return fmt.Errorf("no failure alert yet")
		}
		return nil
	})
	ev, _ := hook.find(activities.AlertFailed)
	body, err := json.Marshal(ev)
	require.NoError(t, err)

	// Everything an operator (or an attacker with namespace access) reads.
	var history strings.Builder
	iter := c.GetWorkflowHistory(ctx, run.GetID(), "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		b, err := protojson.Marshal(e)
		require.NoError(t, err)
		history.Write(b)
	}
	statusJSON, err := json.Marshal(status(t, c, run.GetID()))
	require.NoError(t, err)
	var logText strings.Builder
	for _, entry := range observed.All() {
		logText.WriteString(entry.Message)
		for k, v := range entry.ContextMap() {
			fmt.Fprintf(&logText, " %s=%v", k, v)
		}
		logText.WriteString("\n")
	}
	require.Contains(t, history.String(), "ssn_not_marked", "the history holds the failure")
	for name, text := range map[string]string{"history": history.String(), "status": string(statusJSON), "worker log": logText.String(), "webhook body": string(body)} {
		require.NotContains(t, text, marker, "the row's value in the %s", name)
		require.NotContains(t, text, token, "the webhook token in the %s", name)
	}
}
