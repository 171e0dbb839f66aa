// Package activities holds every side effect of a sync task. Each method is a thin Temporal
// adapter over pkg/: it opens connections, calls the library, heartbeats, and returns errors
// classified for the workflow's retry windows (pkg/errclass).
package activities

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/precheck"
	"github.com/skein-dts/skein/pkg/redact"
	"github.com/skein-dts/skein/pkg/spec"
)

// Activities are the sync task's activities and their dependencies.
type Activities struct {
	Open   dbconn.Opener
	Log    *zap.Logger
	Client client.Client // to report apply progress to the task's workflow
	// PrecheckOptions tune the precheck (tests shorten the long-transaction age).
	PrecheckOptions precheck.Options
	// EncryptedPayloads: the worker seals payloads (temporalx.Encryption); search attributes,
	// readable to whoever can list workflows, are then not published.
	EncryptedPayloads bool
	// Limits bound the chunk copies and apply runs this worker runs at once.
	Limits Limits
	limits slots

	// snapshots holds, per task, the connection that exported the task's snapshot. It lives on the
	// worker that created it; a Temporal session keeps the holder activity on the same worker.
	snapshots sync.Map // task name -> *heldSnapshot
}

type heldSnapshot struct {
	repl *pgconn.PgConn // replication connection (slot + snapshot), or nil
	conn *pgx.Conn      // regular connection (full-only task), or nil
	// end is closed (once) by EndSnapshot: HoldSnapshot returns at once.
	end     chan struct{}
	endOnce sync.Once
}

func newHeldSnapshot(repl *pgconn.PgConn, conn *pgx.Conn) *heldSnapshot {
	return &heldSnapshot{repl: repl, conn: conn, end: make(chan struct{})}
}

func (h *heldSnapshot) close(ctx context.Context) {
	if h.repl != nil {
		_ = h.repl.Close(ctx)
	}
	if h.conn != nil {
		_ = h.conn.Close(ctx)
	}
}

// classify turns err into an ApplicationError whose type is its retry class, so the workflow can
// apply the right retry window. Messages never contain secrets: connection errors name
// user@host:port/database only.
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	class := errclass.Of(err)
	// Row values stay in the databases: the message goes into the history, status, logs and the
	// failure webhook.
	return temporal.NewNonRetryableApplicationError(redact.TextFor(ctx, err), string(class), nil)
}

func (a *Activities) logger(ctx context.Context) *zap.Logger {
	info := activity.GetInfo(ctx)
	return a.Log.With(zap.String("task", info.WorkflowExecution.ID), zap.String("activity", info.ActivityType.Name))
}

// connectBoth opens the source and destination connections.
func (a *Activities) connectBoth(ctx context.Context, source, destination spec.Endpoint) (src, dst *pgx.Conn, err error) {
	src, err = a.Open.Connect(ctx, source)
	if err != nil {
		return nil, nil, err
	}
	dst, err = a.Open.ConnectDestination(ctx, destination)
	if err != nil {
		src.Close(ctx)
		return nil, nil, err
	}
	return src, dst, nil
}

func closeAll(ctx context.Context, conns ...*pgx.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close(context.WithoutCancel(ctx))
		}
	}
}

// heartbeatEvery records a heartbeat every interval until the returned stop is called, so long
// statements don't look like a dead worker. details is called for each heartbeat's payload.
func heartbeatEvery(ctx context.Context, interval time.Duration, details func() any) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, details())
			}
		}
	}()
	return func() { close(done) }
}

// sides is an open pair of connections with the selected tables' definitions, read in a
// transaction on the source (inside the task's snapshot when one is given).
type sides struct {
	src, dst *pgx.Conn
	tx       pgx.Tx // on src; read-only
	defs     []*catalog.Table
}

// openSides connects to both databases and reads the definitions of tables.
func (a *Activities) openSides(ctx context.Context, s spec.Spec, tables []spec.TableMap, snapshot string) (*sides, error) {
	src, dst, err := a.connectBoth(ctx, s.Source, s.Destination)
	if err != nil {
		return nil, err
	}
	tx, err := catalog.BeginRead(ctx, src, snapshot)
	if err != nil {
		closeAll(ctx, src, dst)
		return nil, err
	}
	defs, err := catalog.LoadTables(ctx, tx, tables)
	if err != nil {
		_ = tx.Rollback(ctx)
		closeAll(ctx, src, dst)
		return nil, err
	}
	return &sides{src: src, dst: dst, tx: tx, defs: defs}, nil
}

func (sd *sides) close(ctx context.Context) {
	_ = sd.tx.Rollback(context.WithoutCancel(ctx))
	closeAll(ctx, sd.src, sd.dst)
}

// classifyDDL classifies an error of a schema step: a SQL error the same statement would get
// again fails the task at once (errclass.DDL) instead of using up the retry window.
func classifyDDL(ctx context.Context, err error) error { return classify(ctx, errclass.DDL(err)) }
