package dbconn

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync"
)

// Budget caps the database connections a worker holds open at once, over every task and
// activity. A connection beyond it waits for one to close, up to the connect timeout; then the
// connect fails as a connection error (retried), naming the budget.
type Budget struct {
	tokens chan struct{}
}

// NewBudget returns a budget of n connections (n <= 0: none, no cap).
func NewBudget(n int) *Budget {
	if n <= 0 {
		return nil
	}
	return &Budget{tokens: make(chan struct{}, n)}
}

// Size is the budget's number of connections.
func (b *Budget) Size() int { return cap(b.tokens) }

// InUse is the number of connections open now.
func (b *Budget) InUse() int { return len(b.tokens) }

// Spare is the number of connections that can open now without waiting; a nil budget has no cap.
func (b *Budget) Spare() int {
	if b == nil {
		return math.MaxInt
	}
	return cap(b.tokens) - len(b.tokens)
}

// dial takes a token, then dials with dialer; the token comes back when the connection closes.
func (b *Budget) dial(ctx context.Context, dialer func(ctx context.Context, network, addr string) (net.Conn, error), network, addr string) (net.Conn, error) {
	select {
	case b.tokens <- struct{}{}:
	case <-ctx.Done():
		// Not wrapping ctx's error: pgconn would report a bare timeout.
		return nil, fmt.Errorf("all %d connections of this worker's budget stay in use (raise SKEIN_MAX_CONNECTIONS above 2 x full_load.parallelism + 4, or run more workers)", b.Size())
	}
	conn, err := dialer(ctx, network, addr)
	if err != nil {
		<-b.tokens
		return nil, err
	}
	return &budgetConn{Conn: conn, release: func() { <-b.tokens }}, nil
}

// budgetConn gives its token back once, when it closes.
type budgetConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// NetConn returns the connection it counts (see Waiting).
func (c *budgetConn) NetConn() net.Conn { return c.Conn }

func (c *budgetConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
