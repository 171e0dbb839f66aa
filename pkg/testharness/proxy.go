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

	mu     sync.Mutex
	target string
	conns  map[net.Conn]net.Conn // client side -> server side
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
	p := &Proxy{Port: ln.Addr().(*net.TCPAddr).Port, target: target, ln: ln, conns: map[net.Conn]net.Conn{}}
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
		go p.pipe(c, s, 0)
		go p.pipe(s, c, 1)
	}
}

// pipe copies from src to dst, waiting while direction bit is stalled.
func (p *Proxy) pipe(src, dst net.Conn, bit int) {
	buf := make([]byte, 32<<10)
	defer p.drop(src, dst)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			for time.Now().UnixNano() < p.stalled[bit].Load() && !p.closed.Load() {
				time.Sleep(20 * time.Millisecond)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
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

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.closed.Store(true)
	_ = p.ln.Close()
	p.Reset()
}
