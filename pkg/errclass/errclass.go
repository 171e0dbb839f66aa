// Package errclass sorts errors at the boundary into the classes of the retry windows
// (ARCHITECTURE.md): connection errors, other errors, and errors that can never succeed.
package errclass

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/api"
)

// Class is the retry class of an error (api.Class).
type Class = api.Class

// The classes (api's).
const (
	Connection = api.Connection
	Other      = api.Other
	Fatal      = api.Fatal
)

// Permanent marks err as one that can never succeed (bad spec, missing permission, lost slot).
func Permanent(err error) error { return mark(err, Fatal) }

// Lost marks err as a connection that stopped working (found by Skein, not by the network
// stack): retried on a new connection, as a connection error.
func Lost(err error) error { return mark(err, Connection) }

// marked is an error whose class Skein decided where it arose.
type marked struct {
	err   error
	class Class
}

func (e *marked) Error() string { return e.err.Error() }
func (e *marked) Unwrap() error { return e.err }

func mark(err error, class Class) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, class: class}
}

// Of classifies err.
func Of(err error) Class {
	if err == nil {
		return ""
	}
	var m *marked
	if errors.As(err, &m) {
		return m.class
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return ofSQLState(pgErr.Code)
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		// Authentication failures arrive as a PgError inside ConnectError and are handled above.
		return Connection
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded) {
		return Connection
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return Connection
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return Connection
	}
	msg := err.Error()
	for _, s := range []string{"conn closed", "connection reset", "broken pipe", "connection refused", "unexpected EOF"} {
		if strings.Contains(msg, s) {
			return Connection
		}
	}
	return Other
}

func ofSQLState(code string) Class {
	switch {
	case strings.HasPrefix(code, "08"), // connection exception
		code == "57P01", code == "57P02", code == "57P03", // admin/crash shutdown, cannot connect now
		code == "53300", // too many connections
		code == "55006": // object in use (e.g. replication slot still active after a reconnect)
		return Connection
	case code == "28000", code == "28P01", // invalid authorization, bad password
		code == "3D000",               // database does not exist
		code == "42501",               // insufficient privilege
		strings.HasPrefix(code, "0A"), // feature not supported (e.g. a server built without XML)
		code == "53100":               // disk full: the task waits, failed, until space is freed and it is resumed
		return Fatal
	}
	return Other
}

// DDL marks err permanent when it is a SQL error that the same schema statement gets on every
// try: a syntax or name error, a missing object or type, a feature the server lacks, bad data in
// a definition, a dependency or constraint that fails, a limit the definition exceeds, a missing
// library. Locks, deadlocks, cancellations, resources
// and connection errors stay retryable.
func DDL(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code[:2] {
	case "42", // syntax error or access rule violation (undefined object, wrong type, ...)
		"0A", // feature not supported
		"22", // data exception
		"23", // integrity constraint violation (a key over duplicate rows)
		"2B", // dependent objects still exist
		"3F", // invalid schema name
		"44", // WITH CHECK OPTION violation
		"54": // program limit exceeded (an index row too large, too many columns)
		return Permanent(err)
	}
	if pgErr.Code == "58P01" { // a file the statement names (a C function's library) is missing
		return Permanent(err)
	}
	return err
}
