package testharness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"go.temporal.io/api/workflowservice/v1"
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

// StartTemporal starts a Temporal dev server on a free port with in-memory state, with the
// namespace "default" and the extra namespaces given (each with Skein's search attributes): tests
// that run at the same time each take one, so that their workers and tasks never meet.
func StartTemporal(ctx context.Context, namespaces ...string) (*testsuite.DevServer, error) {
	path, err := TemporalPath()
	if err != nil {
		return nil, err
	}
	args := []string{"--search-attribute", "SkeinPhase=Keyword", "--search-attribute", "SkeinSource=Keyword",
		"--search-attribute", "SkeinDestination=Keyword"}
	for _, ns := range namespaces {
		args = append(args, "--namespace", ns)
	}
	return testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  path,
		ClientOptions: &client.Options{Namespace: "default", Logger: temporalx.NewZapLogger(warnLogger()), DataConverter: temporalx.DataConverter()},
		LogLevel:      "error",
		ExtraArgs:     args,
		Stdout:        os.Stderr,
		Stderr:        os.Stderr,
	})
}

// TemporalServer is a Temporal dev server run as a process with its state in a file, so a test
// can kill it (SIGKILL) and start it again on the same ports and state, as a crashed and
// restarted cluster would be.
type TemporalServer struct {
	Addr   string // host:port of the frontend
	dbFile string
	port   int
	uiPort int
	logf   *os.File
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
}

// StartTemporalServer starts a dev server on free ports with its state in dir.
func StartTemporalServer(ctx context.Context, dir string) (*TemporalServer, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	uiPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "temporal.log"))
	if err != nil {
		return nil, err
	}
	s := &TemporalServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), dbFile: filepath.Join(dir, "temporal.db"), port: port, uiPort: uiPort, logf: logf}
	return s, s.Start(ctx)
}

// Start starts the server (again) and waits until it answers.
func (s *TemporalServer) Start(ctx context.Context) error {
	path, err := TemporalPath()
	if err != nil {
		return err
	}
	s.cmd = exec.Command(path, "server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--ui-port", strconv.Itoa(s.uiPort), "--headless", "--db-filename", s.dbFile, "--log-level", "error", "--namespace", "default",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false",
		"--search-attribute", "SkeinPhase=Keyword", "--search-attribute", "SkeinSource=Keyword", "--search-attribute", "SkeinDestination=Keyword")
	s.cmd.Stdout, s.cmd.Stderr = s.logf, s.logf
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.done)
	for {
		c, err := client.Dial(client.Options{HostPort: s.Addr, Namespace: "default", Logger: temporalx.NewZapLogger(zap.NewNop())})
		if err == nil {
			_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
			if err == nil {
				_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
			}
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("temporal dev server exited: %s (see %s)", s.cmd.ProcessState, s.logf.Name())
		case <-ctx.Done():
			return fmt.Errorf("temporal dev server not ready: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kill ends the server at once (SIGKILL).
func (s *TemporalServer) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Stop kills the server for good.
func (s *TemporalServer) Stop() {
	s.Kill()
	_ = s.logf.Close()
}
