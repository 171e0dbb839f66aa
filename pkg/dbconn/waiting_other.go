//go:build !unix

package dbconn

import "syscall"

// peek cannot ask the socket on this platform.
func peek(syscall.RawConn) (waiting, ok bool) { return false, false }
