package integration

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/testharness"
)

// The long tests run with make test-long (SKEIN_TEST_LONG=1): sizes CI has no time for.
func skipUnlessLong(t *testing.T) {
	if os.Getenv("SKEIN_TEST_LONG") == "" {
		t.Skip("a long test: make test-long runs it")
	}
}

// TestLongTransaction2GB applies one source transaction of 2 GB of row data (about 3.4 GB of WAL),
// streamed by the source before its commit and spooled by the worker: every row arrives and the
// worker's memory stays bounded.
func TestLongTransaction2GB(t *testing.T) {
	skipUnlessLong(t)
	parallel(t)
	p := startProcessTask(t, "it-long-tx", `CREATE TABLE shop.bulk (id int PRIMARY KEY, v text)`, "bulk", nil,
		"SKEIN_LOG_LEVEL=info", "SKEIN_SPOOL_DIR="+t.TempDir())
	src, dst, w := p.src, p.dst, p.first
	waitPhase(t, p.c, p.run.GetID(), api.PhaseIncremental, 3*time.Minute)

	const rows = 10_000_000 // 200 characters each: 2 GB
	began := time.Now()
	testharness.Exec(t, src, fmt.Sprintf(`INSERT INTO shop.bulk SELECT i, repeat(md5(i::text), 6) || lpad(i::text, 8, '0') FROM generate_series(1, %d) i`, rows))
	t.Logf("source transaction committed after %s", time.Since(began).Round(time.Second))
	waitRows(t, dst, "mart.bulk", rows, 30*time.Minute)
	t.Logf("applied %s after the source commit began", time.Since(began).Round(time.Second))
	require.Equal(t, tableDigest(t, src, "shop.bulk"), tableDigest(t, dst, "mart.bulk"))
	peak := w.peakRSS(t)
	t.Logf("worker peak RSS %d MiB", peak>>20)
	require.Less(t, peak, int64(400<<20), "the worker held the transaction in memory")
}

// TestLongValue1GB moves single values of 1,000 MiB, within PostgreSQL's 1 GB limit for one value:
// through the full load, and through change apply as an insert (a streamed transaction), an
// update of another column (the value left untouched) and an update of the value itself.
func TestLongValue1GB(t *testing.T) {
	skipUnlessLong(t)
	parallel(t)
	const size = 1000 << 20
	p := startProcessTask(t, "it-long-value", fmt.Sprintf(`CREATE TABLE shop.huge (id int PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0);
INSERT INTO shop.huge (id, v) VALUES (1, repeat('a', %d));`, size), "huge", nil, "SKEIN_LOG_LEVEL=info", "SKEIN_SPOOL_DIR="+t.TempDir())
	src, dst, w := p.src, p.dst, p.first
	waitPhase(t, p.c, p.run.GetID(), api.PhaseIncremental, 10*time.Minute)
	require.Equal(t, hugeDigest(t, src, "shop.huge"), hugeDigest(t, dst, "mart.huge"), "after the full load")

	testharness.Exec(t, src, fmt.Sprintf(`INSERT INTO shop.huge (id, v) VALUES (2, repeat('b', %d))`, size))
	testharness.Exec(t, src, `UPDATE shop.huge SET n = 1 WHERE id = 2`)
	testharness.Exec(t, src, fmt.Sprintf(`UPDATE shop.huge SET v = repeat('c', %d) WHERE id = 1`, size))
	want := hugeDigest(t, src, "shop.huge")
	testharness.Eventually(t, 20*time.Minute, func() error {
		if got := hugeDigest(t, dst, "mart.huge"); got != want {
			return fmt.Errorf("destination %s, source %s", got, want)
		}
		return nil
	})
	peak := w.peakRSS(t)
	t.Logf("worker peak RSS %d MiB", peak>>20)
	// The value exists about twice and a half at most (the decoded message, its COPY text and
	// what the server connection buffers): not once more per pipelined INSERT.
	require.Less(t, peak, int64(3<<30), "the worker held a value more often than it needs to")
}

// tableDigest is an order-independent digest of a table's rows.
func tableDigest(t *testing.T, conn *pgx.Conn, table string) string {
	var d string
	require.NoError(t, conn.QueryRow(context.Background(),
		fmt.Sprintf(`SELECT count(*) || ':' || coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint), 0) FROM %s t`, table)).Scan(&d))
	return d
}

// hugeDigest names each row by id, value length and md5, and n.
func hugeDigest(t *testing.T, conn *pgx.Conn, table string) string {
	var d string
	require.NoError(t, conn.QueryRow(context.Background(),
		fmt.Sprintf(`SELECT string_agg(id || ':' || length(v) || ':' || md5(v) || ':' || n, ',' ORDER BY id) FROM %s`, table)).Scan(&d))
	return d
}
