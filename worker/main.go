// Command skein-worker runs Skein's workflows and activities. It is the only component that
// connects to the databases and the only one that holds secrets.
//
// Environment: TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE (default "default"),
// TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY, TEMPORAL_TLS_CA, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY
// (a TLS-protected cluster, Temporal Cloud), SKEIN_METRICS_ADDR (Prometheus /metrics, /healthz,
// /readyz; default :9464, "off" for none), SKEIN_MAX_ACTIVITIES, SKEIN_MAX_CHUNK_COPIES,
// SKEIN_MAX_APPLY_RUNS, SKEIN_MAX_CONNECTIONS, SKEIN_STOP_TIMEOUT (tuning), SKEIN_PAYLOAD_KEY
// (payload encryption),
// SKEIN_SECRETS_DIR and SKEIN_SECRET_<NAME> (secrets), SKEIN_LOG_LEVEL (debug|info|warn|error),
// SKEIN_SPOOL_DIR (large streamed transactions), GOMEMLIMIT (the Go runtime's soft memory limit,
// default 256MiB here).
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/skein-dts/skein/activities"
	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/metrics"
	"github.com/skein-dts/skein/pkg/temporalx"
	"github.com/skein-dts/skein/workflows"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "skein-worker:", err)
		os.Exit(1)
	}
}

// defaultMemoryLimit is the worker's soft memory limit unless GOMEMLIMIT sets one. Every large
// value (a row of 100 MB) is read whole from the wire into a buffer that becomes garbage; with the
// limit the garbage collector reclaims those buffers as the heap nears it, instead of letting the
// heap double first. Normal work stays far below it and pays nothing.
const defaultMemoryLimit = 256 << 20

func run() error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
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

	enc, err := temporalx.Encryption()
	if err != nil {
		return err
	}
	conn, err := temporalx.ConnectionFromEnv(nil)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	c, err := client.Dial(conn.Options(client.Options{
		Logger: temporalx.NewZapLogger(log),
		// The history names this worker as Skein's (not the SDK's bare <pid>@<host>@).
		Identity: temporalx.WorkerIdentity(),
		// Large payloads (table lists of big databases) compressed: same converter as the CLI's.
		DataConverter: temporalx.DataConverter(),
		// The SDK's metrics and Skein's own (skein_*, from the workflows) for Prometheus.
		MetricsHandler: metrics.NewHandler(reg),
	}))
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", temporalx.Address(), err)
	}
	defer c.Close()
	ensureSearchAttributes(c, log)
	if addr := metricsAddr(); addr != "" {
		srv, err := metrics.Serve(addr, reg, func(ctx context.Context) error {
			_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		})
		if err != nil {
			// Several workers on one machine share the default port: the first serves it.
			log.Warn("metrics not served: set SKEIN_METRICS_ADDR to a free address (or off)", zap.String("addr", addr), zap.Error(err))
		} else {
			defer srv.Close() //nolint:errcheck
			log.Info("metrics, /healthz and /readyz served", zap.String("addr", srv.Addr()))
		}
	}
	opts, err := workerOptions()
	if err != nil {
		return err
	}
	limits, budget, err := workerLimits()
	if err != nil {
		return err
	}
	w := worker.New(c, api.TaskQueue, opts)
	workflows.Register(w)
	w.RegisterActivity(&activities.Activities{Open: dbconn.Opener{Budget: dbconn.NewBudget(budget)}, Log: log, Client: c,
		EncryptedPayloads: enc != nil, Limits: limits})
	log.Info("skein-worker started", zap.String("temporal", temporalx.Address()), zap.String("task_queue", api.TaskQueue),
		zap.Int("max_activities", opts.MaxConcurrentActivityExecutionSize), zap.Int("max_chunk_copies", limits.ChunkCopies),
		zap.Int("max_apply_runs", limits.ApplyRuns), zap.Int("max_connections", budget), zap.Duration("stop_timeout", opts.WorkerStopTimeout))
	return w.Run(worker.InterruptCh())
}

// ensureSearchAttributes registers Skein's search attributes where they are missing. A namespace
// that refuses (no permission) only loses `skein list --phase` filtering: the workflow checks
// before it publishes.
func ensureSearchAttributes(c client.Client, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := temporalx.Namespace()
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		log.Warn("list search attributes", zap.Error(err))
		return
	}
	missing := map[string]enums.IndexedValueType{}
	for _, name := range workflows.SearchAttributeNames {
		if _, ok := resp.CustomAttributes[name]; !ok {
			missing[name] = enums.INDEXED_VALUE_TYPE_KEYWORD
		}
	}
	if len(missing) == 0 {
		return
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: ns, SearchAttributes: missing,
	}); err != nil {
		log.Warn("register search attributes (skein list --phase falls back to querying each task)", zap.Error(err))
		return
	}
	log.Info("search attributes registered", zap.Int("count", len(missing)))
}

// metricsAddr is SKEIN_METRICS_ADDR (default :9464); "off" serves nothing.
func metricsAddr() string {
	switch a := os.Getenv("SKEIN_METRICS_ADDR"); a {
	case "":
		return ":9464"
	case "off":
		return ""
	default:
		return a
	}
}

// Defaults of the per-kind limits, for a 2-core machine: chunk copies are the CPU-heavy work; a
// change stream is mostly waiting. The connection budget covers both at their limits (2 per
// chunk copy, 4 per apply run) and the short steps beside them.
const (
	defaultChunkCopies = 8
	defaultApplyRuns   = 16
	defaultConnections = 2*defaultChunkCopies + 4*defaultApplyRuns + 48
)

// workerLimits reads SKEIN_MAX_CHUNK_COPIES (chunk copies at once, default 8), SKEIN_MAX_APPLY_RUNS
// (change streams at once, default 16) and SKEIN_MAX_CONNECTIONS (database connections open at
// once over every task, default 128).
func workerLimits() (activities.Limits, int, error) {
	var l activities.Limits
	var err error
	if l.ChunkCopies, err = positiveEnv("SKEIN_MAX_CHUNK_COPIES", defaultChunkCopies); err != nil {
		return l, 0, err
	}
	if l.ApplyRuns, err = positiveEnv("SKEIN_MAX_APPLY_RUNS", defaultApplyRuns); err != nil {
		return l, 0, err
	}
	budget, err := positiveEnv("SKEIN_MAX_CONNECTIONS", defaultConnections)
	if err != nil {
		return l, 0, err
	}
	if budget < 4 {
		return l, 0, fmt.Errorf("SKEIN_MAX_CONNECTIONS %d: an apply run alone needs 4 connections", budget)
	}
	return l, budget, nil
}

// positiveEnv reads a positive number from the environment variable name, def when it is unset.
func positiveEnv(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s %q: a positive number", name, v)
	}
	return n, nil
}

// workerOptions are the worker's options with the tuning of the environment:
// SKEIN_MAX_ACTIVITIES (activities run at once: chunk copies, apply runs, schema steps; default
// 64, for a 2-core machine) and SKEIN_STOP_TIMEOUT (how long a stopping worker, on SIGTERM or
// SIGINT, lets running activities finish before it cancels them; default 60s).
func workerOptions() (worker.Options, error) {
	opts := activities.WorkerOptions()
	opts.WorkerStopTimeout = time.Minute
	n, err := positiveEnv("SKEIN_MAX_ACTIVITIES", 64)
	if err != nil {
		return opts, err
	}
	opts.MaxConcurrentActivityExecutionSize = n
	if v := os.Getenv("SKEIN_STOP_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return opts, fmt.Errorf("SKEIN_STOP_TIMEOUT %q: a duration such as 60s", v)
		}
		opts.WorkerStopTimeout = d
	}
	return opts, nil
}
