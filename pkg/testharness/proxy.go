package testharness

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is a direction of a proxied connection.
type Direction int

// The directions: client to server, server to client, or both.
const (
	ToServer Direction = 1 << iota
	ToClient
	BothWays = ToServer | ToClient
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a server, for network faults: every connection
// reset at once, or forwarding stalled (in one direction or both) while the connections stay
// open, as a network that drops packets without a reset would.
type Proxy struct {
	Port int
	ln   net.Listener

	mu        sync.Mutex
	target    string
	conns     map[net.Conn]net.Conn  // client side -> server side
	frozenDir map[net.Conn]Direction // client side -> the directions frozen (Freeze)
	orphans   []net.Conn             // server sides of frozen connections the client closed
	// stalled[d] holds, for direction bit d (0 to server, 1 to client), the UnixNano time until
	// which forwarding waits.
	stalled [2]atomic.Int64
	closed  atomic.Bool
}

// StartProxy listens on a free port and forwards every connection to target (host:port).
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Port: ln.Addr().(*net.TCPAddr).Port, target: target, ln: ln, conns: map[net.Conn]net.Conn{}, frozenDir: map[net.Conn]Direction{}}
	go p.accept()
	return p, nil
}

// SetTarget sends the connections made from now on to target (host:port): a server that moved
// (a failover), or one that was not there yet.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// NewProxyTo starts a proxy in front of port on 127.0.0.1.
func NewProxyTo(port int) (*Proxy, error) {
	return StartProxy(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		s, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c] = s
		p.mu.Unlock()
		go p.pipe(c, s, c, 0)
		go p.pipe(s, c, c, 1)
	}
}

// pipe copies from src to dst, waiting while direction bit is stalled (for every connection, or
// for client's).
func (p *Proxy) pipe(src, dst, client net.Conn, bit int) {
	buf := make([]byte, 32<<10)
	defer p.drop(src, dst)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for (time.Now().UnixNano() < p.stalled[bit].Load() || p.frozen(client, bit)) && !p.closed.Load() {
				time.Sleep(20 * time.Millisecond)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if bit == 0 && p.frozenAny(client) {
				// A frozen connection's close never reaches the server, as a FIN on a dead path
				// would not: the server's session stays until it is ended there.
				p.mu.Lock()
				p.orphans = append(p.orphans, dst)
				p.mu.Unlock()
				return
			}
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

func (p *Proxy) drop(a, b net.Conn) {
	p.mu.Lock()
	delete(p.conns, a)
	delete(p.conns, b)
	p.mu.Unlock()
}

// Reset closes every open connection with a TCP reset on both sides; new connections work.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	for c, s := range p.conns {
		for _, x := range []net.Conn{c, s} {
			if tc, ok := x.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = x.Close()
		}
		delete(p.conns, c)
	}
	return n
}

// Stall stops forwarding in dir for d: the connections stay open, nothing arrives (and, as the
// buffers fill, nothing can be sent), then forwarding resumes.
func (p *Proxy) Stall(dir Direction, d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	if dir&ToServer != 0 {
		p.stalled[0].Store(until)
	}
	if dir&ToClient != 0 {
		p.stalled[1].Store(until)
	}
}

// Freeze stalls the connections open now in dir for good (until Reset closes them), while new
// connections pass: a connection whose packets stop arriving, on a network that still works.
func (p *Proxy) Freeze(dir Direction) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns { // keyed by the client side
		p.frozenDir[c] = dir
	}
	return len(p.conns)
}

// frozenAny reports whether client's connection is frozen in any direction.
func (p *Proxy) frozenAny(client net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.frozenDir[client]
	return ok
}

// frozen reports whether client's connection is frozen in direction bit.
func (p *Proxy) frozen(client net.Conn, bit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir, ok := p.frozenDir[client]
	if !ok {
		return false
	}
	if _, open := p.conns[client]; !open {
		delete(p.frozenDir, client)
		return false
	}
	return dir&(1<<bit) != 0
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.closed.Store(true)
	_ = p.ln.Close()
	p.Reset()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.orphans {
		_ = c.Close()
	}
	p.orphans = nil
}
