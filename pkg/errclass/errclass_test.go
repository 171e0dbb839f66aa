package errclass

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ""},
		{"refused", fmt.Errorf("connect: %w", syscall.ECONNREFUSED), Connection},
		{"reset", syscall.ECONNRESET, Connection},
		{"eof", io.ErrUnexpectedEOF, Connection},
		{"timeout", context.DeadlineExceeded, Connection},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, Connection},
		{"too many connections", &pgconn.PgError{Code: "53300"}, Connection},
		{"connection exception", &pgconn.PgError{Code: "08006"}, Connection},
		{"bad password", &pgconn.PgError{Code: "28P01"}, Fatal},
		{"no privilege", &pgconn.PgError{Code: "42501"}, Fatal},
		{"unique violation", &pgconn.PgError{Code: "23505"}, Other},
		{"syntax error", &pgconn.PgError{Code: "42601"}, Other},
		{"permanent wins", Permanent(fmt.Errorf("wrapped: %w", syscall.ECONNREFUSED)), Fatal},
		{"plain", errors.New("something"), Other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Of(tt.err))
		})
	}
}

func TestDDL(t *testing.T) {
	for _, tc := range []struct {
		code string
		want Class
	}{
		{"42704", Fatal}, // undefined object: type "pg_catalog.TEXT" does not exist
		{"42601", Fatal}, // syntax error
		{"0A000", Fatal},
		{"23505", Fatal},
		{"40P01", Other},      // deadlock: may succeed later
		{"55P03", Other},      // lock not available
		{"57014", Other},      // canceled
		{"53100", Fatal},      // disk full: failed until an operator frees space and resumes
		{"54000", Fatal},      // index row size exceeds the maximum (a BRIN bloom index without its storage parameters)
		{"58P01", Fatal},      // a C function's library is not there
		{"58030", Other},      // I/O error
		{"08006", Connection}, // connection failure
	} {
		t.Run(tc.code, func(t *testing.T) {
			err := fmt.Errorf("create type x: %w", &pgconn.PgError{Code: tc.code})
			require.Equal(t, tc.want, Of(DDL(err)))
		})
	}
	require.Equal(t, Connection, Of(DDL(io.EOF)))
}
