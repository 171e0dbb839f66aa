package dbconn

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// Traffic watches one connection (the first one dialed through an Opener carrying it): how long
// a read has been waiting for the server's bytes, or a write for the network to take them. A long
// wait is a long statement, a lock, or a connection whose packets no longer arrive; the apply's
// watchdog asks the server which. Results the server sent but the client has not read yet (a
// pipeline) do not count: nothing waits for them.
type Traffic struct {
	claimed atomic.Bool
	reading atomic.Int64 // UnixNano when the read in progress started; 0 = none
	writing atomic.Int64 // the same for a write
}

// Waiting is how long the connection has waited for the network or the server, and a mark of
// that wait (equal marks: the same wait goes on); 0 when no read or write is blocked.
func (t *Traffic) Waiting() (time.Duration, int64) {
	since := t.writing.Load()
	if r := t.reading.Load(); r != 0 && (since == 0 || r < since) {
		since = r
	}
	if since == 0 {
		return 0, 0
	}
	return time.Since(time.Unix(0, since)), since
}

// wrap watches conn unless the Traffic watches another connection already (a cancel request's).
func (t *Traffic) wrap(conn net.Conn) net.Conn {
	if !t.claimed.CompareAndSwap(false, true) {
		return conn
	}
	return &trafficConn{Conn: conn, t: t}
}

type trafficConn struct {
	net.Conn
	t *Traffic
}

// NetConn returns the connection it watches (see Waiting).
func (c *trafficConn) NetConn() net.Conn { return c.Conn }

func (c *trafficConn) Write(b []byte) (int, error) {
	c.t.writing.Store(time.Now().UnixNano())
	defer c.t.writing.Store(0)
	return c.Conn.Write(b)
}

func (c *trafficConn) Read(b []byte) (int, error) {
	c.t.reading.Store(time.Now().UnixNano())
	defer c.t.reading.Store(0)
	return c.Conn.Read(b)
}

// dialer returns dial wrapped so that the connection it makes is watched by t.
func (t *Traffic) dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return t.wrap(conn), nil
	}
}
