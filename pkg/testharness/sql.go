package testharness

import (
	"context"
	"fmt"
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

// ManyTables creates n small tables in schema many (which must exist), named
// table_with_a_longish_name_<i>, with 1 to 5 rows each, and analyzes them. They are made in
// transactions of 500 tables: one transaction would run out of lock slots.
func ManyTables(t testing.TB, conn *pgx.Conn, n int) {
	t.Helper()
	for from := 1; from <= n; from += 500 {
		Exec(t, conn, fmt.Sprintf(`DO $$
BEGIN
  FOR i IN %d..%d LOOP
    EXECUTE format('CREATE TABLE many.%%I (id int PRIMARY KEY, v text)', 'table_with_a_longish_name_' || i);
    EXECUTE format('INSERT INTO many.%%I SELECT g, md5(g::text) FROM generate_series(1, 1 + %%s %%%% 5) g', 'table_with_a_longish_name_' || i, i);
  END LOOP;
END $$`, from, min(from+499, n)))
	}
	Exec(t, conn, "ANALYZE")
}
