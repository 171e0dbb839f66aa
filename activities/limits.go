package activities

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Limits bound what one worker runs at once, beside the SDK's limit on all activities
// (worker.Options.MaxConcurrentActivityExecutionSize). 0 = no limit.
type Limits struct {
	// ChunkCopies is the number of chunk-copy activities (CopyChunk, CopyChunks) running at once;
	// each holds a source and a destination connection.
	ChunkCopies int
	// ApplyRuns is the number of change streams (Apply) running at once; each holds a
	// replication connection, a destination connection and one or two source connections.
	ApplyRuns int
}

// slots is a worker-wide semaphore per kind of activity.
type slots struct {
	once        sync.Once
	chunkCopies chan struct{}
	applyRuns   chan struct{}
}

// slots returns the worker's semaphores, made on first use from Limits (nil: no limit).
func (a *Activities) slots() *slots {
	a.limits.once.Do(func() {
		if a.Limits.ChunkCopies > 0 {
			a.limits.chunkCopies = make(chan struct{}, a.Limits.ChunkCopies)
		}
		if a.Limits.ApplyRuns > 0 {
			a.limits.applyRuns = make(chan struct{}, a.Limits.ApplyRuns)
		}
	})
	return &a.limits
}

// acquire takes a place in sem (one of slots; kind names it), waiting (and heartbeating, so the
// wait is not taken for a lost worker) while all are in use.
func (a *Activities) acquire(ctx context.Context, sem chan struct{}, kind string) (release func(), err error) {
	if sem == nil {
		return func() {}, nil
	}
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	default:
	}
	a.logger(ctx).Info("waiting for a slot on this worker", zap.String("kind", kind), zap.Int("limit", cap(sem)))
	stop := heartbeatEvery(ctx, 10*time.Second, func() any { return "waiting for a " + kind + " slot" })
	defer stop()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
