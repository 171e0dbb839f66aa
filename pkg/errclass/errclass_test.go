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
