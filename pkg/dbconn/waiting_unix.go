//go:build unix

package dbconn

import "syscall"

// peek asks the socket for one byte without taking it and without blocking.
func peek(raw syscall.RawConn) (waiting, ok bool) {
	var buf [1]byte
	var perr error
	// Control, not Read: Read refuses at once while the connection's read deadline has passed.
	err := raw.Control(func(fd uintptr) {
		_, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	switch {
	case err != nil:
		return false, false
	case perr == syscall.EAGAIN || perr == syscall.EWOULDBLOCK:
		return false, true
	}
	// Bytes, an error or the end of the stream (n == 0): the next read returns at once.
	return true, true
}
