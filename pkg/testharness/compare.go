package testharness

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/spec"
)

// Rows returns every row of table as its text form (the listed columns, in order), sorted by
// orderBy: what a row-by-row comparison compares.
func Rows(ctx context.Context, conn *pgx.Conn, table spec.QName, cols, orderBy []string) ([]string, error) {
	q := func(names []string) string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = pgx.Identifier{n}.Sanitize()
		}
		return strings.Join(out, ", ")
	}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT ROW(%s)::text FROM %s ORDER BY %s", q(cols), table.Quoted(), q(orderBy)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// CompareRows compares a source table with its destination copy row by row. srcCols and dstCols
// name the same columns on each side (they differ when columns are renamed). It returns nil when
// every row is equal, else an error describing the first difference and the row counts.
func CompareRows(ctx context.Context, src, dst *pgx.Conn, srcTable, dstTable spec.QName, srcCols, dstCols, srcKey, dstKey []string) error {
	a, err := Rows(ctx, src, srcTable, srcCols, srcKey)
	if err != nil {
		return err
	}
	b, err := Rows(ctx, dst, dstTable, dstCols, dstKey)
	if err != nil {
		return err
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return fmt.Errorf("%s vs %s: row %d differs:\n source: %.300s\n   dest: %.300s", srcTable, dstTable, i, a[i], b[i])
		}
	}
	if len(a) != len(b) {
		return fmt.Errorf("%s vs %s: %d source rows, %d destination rows", srcTable, dstTable, len(a), len(b))
	}
	return nil
}

// Eventually retries check until it returns nil, and fails t with check's last error when
// timeout passes first: the one poller of the tests.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("not reached in %s: %v", timeout, err)
}
