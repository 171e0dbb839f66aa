package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
)

// errDestinationStalled is the cause with which the watchdog ends an apply run.
var errDestinationStalled = errors.New("the destination connection stopped answering")

// watchDestination ends the apply run (through stop) when its destination connection waits for
// the server longer than after and the server, asked on a new connection, is not working on the
// session's statement: the session is idle (the answer was lost on the way), gone, or the server
// cannot be reached. A statement the server is still running (a long one, or one waiting for a
// lock) is left alone. The run then fails as a connection error and starts again on a new
// connection, from the LSN committed on the destination. Without it, a connection whose packets
// stop arriving, with no reset, would hold the stream until the kernel gave it up.
func (a *Activities) watchDestination(ctx context.Context, stop context.CancelCauseFunc, ep spec.Endpoint, traffic *dbconn.Traffic, pid uint32, after time.Duration, log *zap.Logger) {
	if after <= 0 {
		after = time.Minute
	}
	tick := time.NewTicker(max(after/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		waited, mark := traffic.Waiting()
		if waited < after {
			continue
		}
		state, err := a.sessionState(ctx, ep, pid)
		if ctx.Err() != nil {
			return
		}
		if _, now := traffic.Waiting(); now != mark {
			continue // the answer came while the server was asked
		}
		var why string
		end := false
		switch {
		case err != nil:
			why = "the server cannot be asked: " + err.Error()
		case state == "active":
			log.Info("a destination statement runs long; the server is working on it", zap.Duration("waited", waited), zap.Uint32("pid", pid))
			continue
		case state == "":
			why = fmt.Sprintf("the server has no session %d any more", pid)
		default:
			why = fmt.Sprintf("the server's session %d is %s: the statement or its answer was lost on the way", pid, state)
			end = true
		}
		err = errclass.Lost(fmt.Errorf("%w: a statement waited %s for the server, and %s; the stream starts again on a new connection",
			errDestinationStalled, waited.Round(time.Second), why))
		log.Warn("destination connection stalled", zap.Error(err))
		// The verdict first: ending the session can make the stalled statement fail on its own
		// (its answer path may still work), and the run must report why.
		stop(err)
		if end {
			// Its open transaction would hold row locks against the next run until the server's
			// keepalives noticed: end the session (it never committed what is not recorded).
			if err := a.endSession(context.WithoutCancel(ctx), ep, pid); err != nil {
				log.Warn("could not end the stalled destination session", zap.Uint32("pid", pid), zap.Error(err))
			}
		}
		return
	}
}

// sessionState is the state of backend pid in pg_stat_activity ("" if it is gone), read on a new
// destination connection.
func (a *Activities) sessionState(ctx context.Context, ep spec.Endpoint, pid uint32) (string, error) {
	var state *string
	err := a.onNewDestination(ctx, ep, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT a.state FROM pg_catalog.pg_stat_activity a WHERE a.pid = $1`, int64(pid)).Scan(&state)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", nil
	case err != nil:
		return "", err
	case state == nil:
		return "unknown", nil
	}
	return *state, nil
}

// endSession ends backend pid, the task's own role's, from a new destination connection.
func (a *Activities) endSession(ctx context.Context, ep spec.Endpoint, pid uint32) error {
	return a.onNewDestination(ctx, ep, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SELECT pg_catalog.pg_terminate_backend($1::pg_catalog.int4)`, int64(pid))
		return err
	})
}

// onNewDestination runs fn on a new destination connection, opened within 15 s.
func (a *Activities) onNewDestination(ctx context.Context, ep spec.Endpoint, fn func(conn *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := a.Open.ConnectDestination(ctx, ep)
	if err != nil {
		return err
	}
	defer closeAll(ctx, conn)
	return fn(conn)
}
