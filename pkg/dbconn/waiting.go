package dbconn

import (
	"net"
	"syscall"
)

// Waiting reports whether bytes from the server wait on conn's socket, unread, without reading
// them or waiting for any: ok is false when the socket cannot be asked (a connection type that
// does not say what it wraps). A TLS connection is asked about its socket: bytes there are at
// least part of a record. What a client library buffered already is not counted.
func Waiting(conn net.Conn) (waiting, ok bool) {
	for conn != nil {
		if sc, is := conn.(syscall.Conn); is {
			raw, err := sc.SyscallConn()
			if err != nil {
				return false, false
			}
			return peek(raw)
		}
		wrapper, is := conn.(interface{ NetConn() net.Conn })
		if !is {
			return false, false
		}
		conn = wrapper.NetConn()
	}
	return false, false
}
