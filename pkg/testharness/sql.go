package testharness

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Exec runs statements on conn in order, failing the test (and naming the statement) on an error.
func Exec(t testing.TB, conn *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
