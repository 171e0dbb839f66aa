// Command skein-worker runs Skein's workflows and activities. It is the only component that
// connects to the databases and the only one that holds secrets.
//
// Environment: TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE (default "default"),
// SKEIN_SECRETS_DIR and SKEIN_SECRET_<NAME> (secrets), SKEIN_LOG_LEVEL (debug|info|warn|error).
package main

import (
	"fmt"
	"os"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/temporalx"
	"github.com/skein-dts/skein/workflows"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "skein-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	level := zapcore.InfoLevel
	if l := os.Getenv("SKEIN_LOG_LEVEL"); l != "" {
		if err := level.Set(l); err != nil {
			return fmt.Errorf("SKEIN_LOG_LEVEL: %w", err)
		}
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	log, err := cfg.Build()
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck

	c, err := client.Dial(client.Options{
		HostPort:  temporalx.Address(),
		Namespace: temporalx.Namespace(),
		Logger:    temporalx.NewZapLogger(log),
	})
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", temporalx.Address(), err)
	}
	defer c.Close()
	w := worker.New(c, workflows.TaskQueue, workflows.WorkerOptions())
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{Open: dbconn.Opener{}, Log: log, Client: c})
	log.Info("skein-worker started", zap.String("temporal", temporalx.Address()), zap.String("task_queue", workflows.TaskQueue))
	return w.Run(worker.InterruptCh())
}
