package fullload_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/bookkeeping"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/fullload"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// copyFixture is a source and a destination database with table public.t (10 MB on the source,
// empty on the destination) and one chunk of all of it.
type copyFixture struct {
	pg              *testharness.Postgres
	src, dst, other *pgx.Conn
	def             *catalog.Table
	tm              spec.TableMap
}

// reconnect gives the fixture new source and destination connections.
func (f *copyFixture) reconnect(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct {
		conn **pgx.Conn
		db   string
	}{{&f.src, "src"}, {&f.dst, "dst"}} {
		conn, err := f.pg.Connect(ctx, c.db)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(ctx) })
		*c.conn = conn
	}
}

func newCopyFixture(t *testing.T) *copyFixture {
	t.Helper()
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{})
	require.NoError(t, pg.CreateDatabase(ctx, "src"))
	require.NoError(t, pg.CreateDatabase(ctx, "dst"))
	f := &copyFixture{pg: pg}
	for _, c := range []struct {
		conn **pgx.Conn
		db   string
	}{{&f.src, "src"}, {&f.dst, "dst"}, {&f.other, "dst"}} {
		conn, err := pg.Connect(ctx, c.db)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close(ctx) })
		*c.conn = conn
	}
	_, err := f.src.Exec(ctx, `CREATE TABLE public.t (id int PRIMARY KEY, v text);
INSERT INTO public.t SELECT g, pg_catalog.repeat('x', 100) FROM pg_catalog.generate_series(1, 100000) g; ANALYZE public.t`)
	require.NoError(t, err)
	_, err = f.dst.Exec(ctx, `CREATE TABLE public.t (id int PRIMARY KEY, v text)`)
	require.NoError(t, err)
	require.NoError(t, bookkeeping.Ensure(ctx, f.dst))
	f.tm = spec.TableMap{Source: spec.QName{Schema: "public", Name: "t"}, Dest: spec.QName{Schema: "public", Name: "t"}}
	f.def, err = catalog.LoadTable(ctx, f.src, f.tm.Source)
	require.NoError(t, err)
	return f
}

func (f *copyFixture) chunk(gen int) fullload.Chunk {
	return fullload.Chunk{ID: fullload.TableKey(f.tm.Source) + "#0", Table: f.tm, Generation: gen}
}

func (f *copyFixture) destRows(t *testing.T) (rows int64, chunkDone bool) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, f.other.QueryRow(ctx, `SELECT count(*) FROM public.t`).Scan(&rows))
	done, _, _, err := bookkeeping.ChunkDone(ctx, f.other, "task", fullload.TableKey(f.tm.Source)+"#0")
	require.NoError(t, err)
	return rows, done
}

// TestStaleChunkDoesNotCommit: a chunk of a load generation older than its table's (the table was
// reset for a reload while an activity of the first load still ran) commits nothing; the new
// generation's chunk loads the table.
func TestStaleChunkDoesNotCommit(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t)
	c := &fullload.Copier{Task: "task", Source: f.src, Dest: f.dst}
	require.NoError(t, fullload.Reset(ctx, f.other, "task", []spec.TableMap{f.tm}, []int{1}))

	_, err := c.CopyChunk(ctx, f.def, f.chunk(0))
	require.ErrorIs(t, err, fullload.ErrStaleChunk)
	rows, done := f.destRows(t)
	require.Zero(t, rows)
	require.False(t, done)

	res, err := c.CopyChunk(ctx, f.def, f.chunk(1))
	require.NoError(t, err)
	require.Equal(t, int64(100000), res.Rows)
	rows, done = f.destRows(t)
	require.Equal(t, int64(100000), rows)
	require.True(t, done)
	gen, err := bookkeeping.LoadGeneration(ctx, f.other, "task", fullload.TableKey(f.tm.Source))
	require.NoError(t, err)
	require.Equal(t, 1, gen, "a chunk's rows do not change the generation")
}

// TestResetWaitsForChunkInFlight: a reset that comes while an older generation's chunk is
// copying waits for it and then removes its rows and its chunk-done row.
func TestResetWaitsForChunkInFlight(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t)
	resetDone := make(chan error, 1)
	resetting := false
	c := &fullload.Copier{Task: "task", Source: f.src, Dest: f.dst, Progress: func(int64) {
		if resetting {
			return
		}
		resetting = true
		go func() { resetDone <- fullload.Reset(ctx, f.other, "task", []spec.TableMap{f.tm}, []int{1}) }()
		select {
		case err := <-resetDone:
			resetDone <- errors.Join(errors.New("the reset did not wait for the chunk in flight"), err)
		case <-time.After(500 * time.Millisecond):
		}
	}}
	res, err := c.CopyChunk(ctx, f.def, f.chunk(0))
	require.NoError(t, err, "the chunk started before the reset commits")
	require.Equal(t, int64(100000), res.Rows)
	require.True(t, resetting, "the copy reported progress")
	require.NoError(t, <-resetDone)
	rows, done := f.destRows(t)
	require.Zero(t, rows, "the reset removed the chunk's rows")
	require.False(t, done, "and its chunk-done row")
}

// TestResetBeforeTheSchemaStep: a snapshot lost before the schema step created anything resets
// tables that do not exist yet, on a destination without bookkeeping: nothing to empty, no error.
func TestResetBeforeTheSchemaStep(t *testing.T) {
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{})
	conn, err := pg.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer conn.Close(ctx)
	tm := spec.TableMap{Source: spec.QName{Schema: "public", Name: "later"}, Dest: spec.QName{Schema: "app", Name: "later"}}
	require.NoError(t, fullload.Reset(ctx, conn, "task", []spec.TableMap{tm}, []int{1}))
	require.NoError(t, fullload.Reset(ctx, conn, "task", []spec.TableMap{tm}, []int{2}), "and again")
}

// TestCopyReportsTheFailingSide: whichever half of a chunk copy fails, its own error is the one
// reported (and classified). A destination refusing the first row of a 10 MB chunk fails while
// the source is still writing (the source half then fails with "destination stopped reading",
// which once hid the destination's error and its SQLSTATE); a source failing mid-stream makes
// the destination fail too (CopyFail), and the source's error is the cause. Nothing commits.
func TestCopyReportsTheFailingSide(t *testing.T) {
	ctx := context.Background()
	f := newCopyFixture(t)
	for _, tc := range []struct {
		name, dest, where string
		code              string // the SQLSTATE reported
		side              string // "write to destination" or "read from source"
	}{
		{"check on the first row", `id int PRIMARY KEY CHECK (id > 1), v text`, "", "23514", "write to destination"},
		{"check on the last row", `id int PRIMARY KEY CHECK (id < 100000), v text`, "", "23514", "write to destination"},
		{"value too long", `id int PRIMARY KEY, v varchar(5)`, "", "22001", "write to destination"},
		{"not null of a column the source lacks", `id int PRIMARY KEY, v text, w int NOT NULL`, "", "23502", "write to destination"},
		{"binary value of another type", `id int PRIMARY KEY, v int`, "", "22P03", "write to destination"},
		{"source fails mid-stream", `id int PRIMARY KEY, v text`, "1 / (id - 50000) IS NOT NULL", "22012", "read from source"},
	} {
		// A failed copy leaves its source connection closed (its COPY was cut off): each case
		// gets new ones, as the next activity attempt would.
		f.reconnect(t)
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.other.Exec(ctx, `DROP TABLE public.t; CREATE TABLE public.t (`+tc.dest+`)`)
			require.NoError(t, err)
			ch := f.chunk(0)
			ch.Table.Where = tc.where
			c := &fullload.Copier{Task: "task", Source: f.src, Dest: f.dst}
			_, err = c.CopyChunk(ctx, f.def, ch)
			require.Error(t, err)
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr, "%v", err)
			require.Equal(t, tc.code, pgErr.Code, "%v", err)
			require.Contains(t, err.Error(), tc.side)
			require.NotContains(t, err.Error(), "destination stopped reading")
			rows, done := f.destRows(t)
			require.Zero(t, rows)
			require.False(t, done)
		})
	}
}
