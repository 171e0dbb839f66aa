package testharness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/temporalx"
)

func warnLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.DisableStacktrace = true
	cfg.Encoding = "console"
	cfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

// TemporalPath finds the temporal CLI: $TEMPORAL_CLI, else bin/temporal in the repository root
// (found by walking up from the working directory to go.mod).
func TemporalPath() (string, error) {
	if p := os.Getenv("TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("temporal CLI not found: set TEMPORAL_CLI or run from the repository")
	}
	p := filepath.Join(root, "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("temporal CLI not found at %s: run 'make tools' (or set TEMPORAL_CLI)", p)
	}
	return p, nil
}

// StartTemporal starts a Temporal dev server on a free port with in-memory state.
func StartTemporal(ctx context.Context) (*testsuite.DevServer, error) {
	path, err := TemporalPath()
	if err != nil {
		return nil, err
	}
	return testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  path,
		ClientOptions: &client.Options{Namespace: "default", Logger: temporalx.NewZapLogger(warnLogger()), DataConverter: temporalx.DataConverter()},
		LogLevel:      "error",
		ExtraArgs: []string{"--search-attribute", "SkeinPhase=Keyword", "--search-attribute", "SkeinSource=Keyword",
			"--search-attribute", "SkeinDestination=Keyword"},
		Stdout: os.Stderr,
		Stderr: os.Stderr,
	})
}
