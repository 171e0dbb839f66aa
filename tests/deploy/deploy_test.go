// Package deploy checks the deployment files in deployments/ without a Docker engine or a
// cluster: the compose file, the Dockerfile and the Grafana dashboard are parsed and checked, the
// Helm chart is linted and rendered with the pinned helm and its manifests parsed.
package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

const helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	require.NoError(t, err)
	return dir
}

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), rel))
	require.NoError(t, err)
	return b
}

func TestComposeFile(t *testing.T) {
	var doc struct {
		Services map[string]struct {
			Image       string            `json:"image"`
			Environment map[string]string `json:"environment"`
			Volumes     []string          `json:"volumes"`
			Build       *struct {
				Context    string `json:"context"`
				Dockerfile string `json:"dockerfile"`
			} `json:"build"`
		} `json:"services"`
	}
	require.NoError(t, yaml.Unmarshal(stripName(read(t, "deployments/compose/docker-compose.yaml")), &doc), "the compose file parses")
	names := []string{}
	for n := range doc.Services {
		names = append(names, n)
	}
	require.ElementsMatch(t, []string{"temporal-db", "temporal", "temporal-ui", "skein-worker", "prometheus", "grafana"}, names)
	w := doc.Services["skein-worker"]
	require.Equal(t, "temporal:7233", w.Environment["TEMPORAL_ADDRESS"])
	require.Equal(t, ":9464", w.Environment["SKEIN_METRICS_ADDR"])
	require.NotNil(t, w.Build)
	require.FileExists(t, filepath.Join(root(t), "deployments/compose", w.Build.Context, w.Build.Dockerfile))
	require.Equal(t, "postgres12", doc.Services["temporal"].Environment["DB"], "Temporal persists in PostgreSQL")
	for _, svc := range []string{"prometheus", "grafana"} {
		for _, v := range doc.Services[svc].Volumes {
			_, err := os.Stat(filepath.Join(root(t), "deployments/compose", strings.Split(v, ":")[0]))
			require.NoError(t, err, "%s mounts %s", svc, v)
		}
	}
	require.Contains(t, string(read(t, "deployments/prometheus/prometheus.yml")), "skein-worker")
}

// stripName drops the top-level name key (compose's project name), which the struct leaves out.
func stripName(b []byte) []byte {
	return regexp.MustCompile(`(?m)^name: .*$`).ReplaceAll(b, nil)
}

func TestDockerfile(t *testing.T) {
	d := string(read(t, "deployments/docker/Dockerfile"))
	require.GreaterOrEqual(t, strings.Count(d, "\nFROM "), 1)
	require.Equal(t, 2, strings.Count("\n"+d, "\nFROM "), "multi-stage: build, then a small runtime image")
	require.Contains(t, d, "CGO_ENABLED=0", "static binaries")
	require.Regexp(t, `(?m)^USER nonroot`, d, "not root")
	require.NotRegexp(t, `(?m)^USER root`, d)
	for _, p := range []string{"./worker", "./starter"} {
		require.Contains(t, d, p)
	}
}

func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(read(t, "deployments/grafana/skein-dashboard.json"), &dash))
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, metric := range []string{"skein_task_phase", "skein_rows_copied", "skein_changes_applied_total", "skein_apply_lag_seconds", "skein_apply_lag_bytes", "skein_retry_attempts", "skein_schema_changes_total",
		"skein_verify_differences", "skein_verify_rows_compared_total", "skein_verify_differences_found_total", "skein_verify_rows_repaired_total", "skein_verify_last_clean_timestamp"} {
		require.True(t, strings.Contains(strings.Join(exprs, "\n"), metric), "the dashboard shows %s", metric)
	}
}

// helm runs the pinned helm (built from the Go module proxy, as the task's stack says).
func helm(t *testing.T, args ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds helm")
	}
	cmd := exec.Command("go", append([]string{"run", helmModule}, args...)...)
	cmd.Dir = root(t)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Run(), "helm %v: %s", args, errOut.String())
	return out.String()
}

// manifests parses helm template's output into objects.
func manifests(t *testing.T, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range strings.Split(text, "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---")) == "" {
			continue
		}
		var obj map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(doc), &obj), doc)
		if obj != nil {
			out = append(out, obj)
		}
	}
	return out
}

func TestHelmChart(t *testing.T) {
	chart := "deployments/helm/skein-worker"
	require.Contains(t, helm(t, "lint", "--strict", chart), "0 chart(s) failed")
	kinds := func(objs []map[string]any) map[string]map[string]any {
		m := map[string]map[string]any{}
		for _, o := range objs {
			m[o["kind"].(string)] = o
		}
		return m
	}

	plain := kinds(manifests(t, helm(t, "template", "skein", chart)))
	require.Contains(t, plain, "Deployment")
	require.Contains(t, plain, "Service")
	require.NotContains(t, plain, "ServiceMonitor")
	dep := plain["Deployment"]
	b, err := json.Marshal(dep)
	require.NoError(t, err)
	text := string(b)
	for _, want := range []string{`"replicas":2`, `"TEMPORAL_ADDRESS"`, `"SKEIN_SECRETS_DIR"`, `"/healthz"`, `"/readyz"`, `"runAsNonRoot":true`,
		`"secretName":"skein-secrets"`, `"prometheus.io/scrape":"true"`, `"terminationGracePeriodSeconds":120`,
		`{"name":"SKEIN_STOP_TIMEOUT","value":"105s"}`, `{"name":"SKEIN_MAX_CHUNK_COPIES","value":"8"}`,
		`{"name":"SKEIN_MAX_APPLY_RUNS","value":"16"}`, `{"name":"SKEIN_MAX_CONNECTIONS","value":"128"}`} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "TEMPORAL_TLS_CERT")

	secured := kinds(manifests(t, helm(t, "template", "skein", chart, "--set", "temporal.tlsSecret=temporal-tls", "--set", "temporal.apiKeySecret=cloud",
		"--set", "metrics.serviceMonitor.enabled=true", "--set", "replicaCount=5", "--set", "payloadKey=payload-key")))
	require.Contains(t, secured, "ServiceMonitor")
	b, err = json.Marshal(secured["Deployment"])
	require.NoError(t, err)
	text = string(b)
	for _, want := range []string{`"replicas":5`, `"TEMPORAL_TLS_CERT"`, `"TEMPORAL_TLS_CA"`, `"secretName":"temporal-tls"`, `"TEMPORAL_API_KEY"`, `"SKEIN_PAYLOAD_KEY"`} {
		require.Contains(t, text, want)
	}
}
