// Package temporalx holds the small adapters between Skein and the Temporal SDK shared by the
// worker and the CLI: connection settings from the environment and a zap logger for the SDK.
package temporalx

import (
	"os"

	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
)

// Address is TEMPORAL_ADDRESS, default localhost:7233.
func Address() string {
	if a := os.Getenv("TEMPORAL_ADDRESS"); a != "" {
		return a
	}
	return defaultAddress
}

// Namespace is TEMPORAL_NAMESPACE, default "default".
func Namespace() string {
	if n := os.Getenv("TEMPORAL_NAMESPACE"); n != "" {
		return n
	}
	return defaultNamespace
}

// zapLogger adapts zap to the SDK's logger interface.
type zapLogger struct{ s *zap.SugaredLogger }

// NewZapLogger returns an SDK logger writing to l.
func NewZapLogger(l *zap.Logger) log.Logger {
	return zapLogger{s: l.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

func (z zapLogger) Debug(msg string, kv ...any) { z.s.Debugw(msg, kv...) }
func (z zapLogger) Info(msg string, kv ...any)  { z.s.Infow(msg, kv...) }
func (z zapLogger) Warn(msg string, kv ...any)  { z.s.Warnw(msg, kv...) }
func (z zapLogger) Error(msg string, kv ...any) { z.s.Errorw(msg, kv...) }
