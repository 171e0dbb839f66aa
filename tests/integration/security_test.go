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
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/secrets"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/temporalx"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// TestRowValuesAndWebhookTokensStayOut: an apply error caused by a row holding a marker value
// names the table, the constraint and the row's key, but the marker is in none of the workflow
// history, the status, the worker's log and the failure webhook's body; the webhook URL, read
// from a secret, carries a token that is in none of them either.
func TestRowValuesAndWebhookTokensStayOut(t *testing.T) {
	parallel(t)
	const marker, token = "SSN-MARKER-123-45-6789", "TOKEN-MARKER-s3cr3t"
	hook := newWebhook(t)
	srcPG, dstPG, src, dst := clusterPair(t, true, "people", `
CREATE SCHEMA hr;
CREATE TABLE hr.people (id int PRIMARY KEY, ssn text);
INSERT INTO hr.people VALUES (1, 'ordinary');`)

	secretsDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(secretsDir, "hook"), []byte(hook.srv.URL+"/alerts?token="+token+"\n"), 0o600))
	logs, observed := observer.New(zap.DebugLevel)
	c := temporalClient(t)
	w := worker.New(c, api.TaskQueue, activities.WorkerOptions())
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{Open: dbconn.Opener{Secrets: secrets.Resolver{Dir: secretsDir}}, Log: zap.New(logs), Client: c})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	s := spec.Spec{Name: "it-secure", Source: srcPG.Endpoint("people"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "hr"}},
		Alerts:  spec.Alerts{WebhookURLSecret: "hook"},
		Retry:   spec.Retry{ConnectionMinutes: 10, OtherMinutes: 2}}
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 200 * time.Millisecond, RetryUnit: time.Second}})
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	// The destination refuses the value the source accepts.
	testharness.Exec(t, dst, `ALTER TABLE hr.people ADD CONSTRAINT ssn_not_marked CHECK (ssn NOT LIKE '%MARKER%')`)
	testharness.Exec(t, src, fmt.Sprintf(`INSERT INTO hr.people VALUES (7, '%s')`, marker))

	st := waitPhase(t, c, run.GetID(), api.PhaseFailed, 2*time.Minute)
	require.Contains(t, st.LastError, "hr.people")
	require.Contains(t, st.LastError, "id=7", "the key is named")
	require.Contains(t, st.LastError, `"ssn_not_marked"`, "the constraint is named")
	require.Contains(t, st.LastError, "Failing row contains (value redacted)")
	testharness.Eventually(t, time.Minute, func() error {
		if _, ok := hook.find(activities.AlertFailed); !ok {
			return fmt.Errorf("no failure alert yet")
		}
		return nil
	})
	ev, _ := hook.find(activities.AlertFailed)
	body, err := json.Marshal(ev)
	require.NoError(t, err)

	// Everything an operator (or an attacker with namespace access) reads.
	history := historyText(t, c, run.GetID(), temporalx.DataConverter())
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
	require.Contains(t, history, "ssn_not_marked", "the history holds the failure")
	require.Contains(t, history, `"webhook_url_secret":"hook"`, "payloads are read: the spec is there")
	for name, text := range map[string]string{"history": history, "status": string(statusJSON), "worker log": logText.String(), "webhook body": string(body)} {
		require.NotContains(t, text, marker, "the row's value in the %s", name)
		require.NotContains(t, text, token, "the webhook token in the %s", name)
	}
}

// TestEncryptedPayloads: with payload encryption on (the worker's and the client's converter),
// the history holds nothing readable of the spec (hosts, databases, users) and no search
// attribute names a server, while status through the same converter reads as usual.
func TestEncryptedPayloads(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "payload-key"), []byte(strings.Repeat("5a", 32)), 0o600))
	enc, err := temporalx.EncryptionFrom(secrets.Resolver{Dir: dir}, func(k string) string {
		return map[string]string{"SKEIN_PAYLOAD_KEY": "payload-key"}[k]
	})
	require.NoError(t, err)
	c, err := client.Dial(client.Options{HostPort: devServer.FrontendHostPort(), Namespace: namespace(t),
		Logger: temporalx.NewZapLogger(zap.NewNop()), DataConverter: temporalx.DataConverterWith(enc)})
	require.NoError(t, err)
	defer c.Close()
	w := worker.New(c, api.TaskQueue, activities.WorkerOptions())
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{Log: zap.NewNop(), Client: c, EncryptedPayloads: true})
	require.NoError(t, w.Start())
	defer w.Stop()

	srcPG, dstPG, src, dst := clusterPair(t, true, "sealed_source_db", `CREATE SCHEMA vault; CREATE TABLE vault.t (id int PRIMARY KEY, v text); INSERT INTO vault.t VALUES (1, 'a');`)
	s := spec.Spec{Name: "it-sealed", Source: srcPG.Endpoint("sealed_source_db"), Destination: dstPG.Endpoint("target"),
		Objects: []spec.Object{{Schema: "vault", To: "sealed_dest_schema"}}}
	run := startTask(t, c, s, nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	testharness.Exec(t, src, `INSERT INTO vault.t VALUES (2, 'b')`)
	testharness.Eventually(t, time.Minute, func() error {
		return compareAll(ctx, src, dst, []tableCheck{tableOf("vault", "t", "sealed_dest_schema", "t", "id", "v")})
	})

	history := historyText(t, temporalClient(t), run.GetID(), temporalx.DataConverter())
	require.Contains(t, history, temporalx.EncodingEncrypted, "payloads are sealed")
	require.Contains(t, history, "it-sealed", "the task's id stays readable")
	for _, secret := range []string{"sealed_source_db", "sealed_dest_schema", fmt.Sprintf(`"port":%d`, srcPG.Port), `"user":"postgres"`} {
		require.NotContains(t, history, secret)
	}
	// The same history read through the codec holds them: the check above can fail.
	require.Contains(t, historyText(t, c, run.GetID(), temporalx.DataConverterWith(enc)), "sealed_source_db")
	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), "")
	require.NoError(t, err)
	for name := range desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields() {
		require.NotContains(t, []string{"SkeinSource", "SkeinDestination"}, name, "no search attribute names a server")
	}
}

// historyText is a workflow's history as JSON followed by the text of every payload in it, as
// the client's converter decodes it (encrypted ones stay sealed without the codec).
func historyText(t *testing.T, c client.Client, id string, dc converter.DataConverter) string {
	t.Helper()
	ctx := context.Background()
	var out strings.Builder
	iter := c.GetWorkflowHistory(ctx, id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var payloads []*commonpb.Payload
	for iter.HasNext() {
		e, err := iter.Next()
		require.NoError(t, err)
		b, err := protojson.Marshal(e)
		require.NoError(t, err)
		out.Write(b)
		out.WriteString("\n")
		payloads = append(payloads, collectPayloads(e.ProtoReflect())...)
	}
	for _, p := range payloads {
		out.WriteString(string(p.GetMetadata()["encoding"]) + " ")
		var v any
		if err := dc.FromPayload(p, &v); err == nil {
			b, _ := json.Marshal(v)
			out.Write(b)
		} else {
			out.Write(p.GetData())
		}
		out.WriteString("\n")
	}
	return out.String()
}

// collectPayloads finds every Payload message inside m.
func collectPayloads(m protoreflect.Message) []*commonpb.Payload {
	if p, ok := m.Interface().(*commonpb.Payload); ok {
		return []*commonpb.Payload{p}
	}
	var out []*commonpb.Payload
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				out = append(out, collectPayloads(v.List().Get(i).Message())...)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				out = append(out, collectPayloads(mv.Message())...)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			out = append(out, collectPayloads(v.Message())...)
		}
		return true
	})
	return out
}
