package cdc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/cdc"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/pkg/throttle"
)

// Tests of table shapes real databases have and fixtures tend to leave out: keyless tables of
// types without a plain equality, identity columns that are not the key, TRUNCATE options,
// relations the task does not know, overwrites on keyless tables with a primary key, long
// transactions.

// streamError runs the stream until it fails (or a minute passes) and returns its error.
func (p *pair) streamError(t *testing.T, tune func(*cdc.StreamOptions)) error {
	t.Helper()
	done, cancel, closeConns := p.startStream(t, tune)
	defer closeConns()
	defer cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the stream did not fail")
		return nil
	}
}

const keylessDocs = `
CREATE TABLE public.docs (n int, body json, pos point, area box, c circle, x xml, tags text[], span int4range, f float8, note text);
ALTER TABLE public.docs REPLICA IDENTITY FULL;
INSERT INTO public.docs VALUES
  (1, '{"a": 1,  "b": [1, 2]}', '(1,2)', '((0,0),(1,1))', '<(0,0),1>', '<a/>', '{x,NULL}', '[1,5)', 0.1, NULL),
  (2, '[]', '(0.1,0.2)', '((1,1),(2,2))', '<(1,1),2>', '<b>t</b>', '{}', 'empty', 1e-300, 'two'),
  (3, '{"dup": true}', '(3,3)', '((0,0),(3,3))', '<(3,3),3>', '<c/>', '{d}', '[3,4)', 3, NULL),
  (3, '{"dup": true}', '(3,3)', '((0,0),(3,3))', '<(3,3),3>', '<c/>', '{d}', '[3,4)', 3, NULL),
  (4, '{"dup": 4}', '(4,4)', '((0,0),(4,4))', '<(4,4),4>', '<d/>', '{e}', '[4,5)', 4, 'four'),
  (4, '{"dup": 4}', '(4,4)', '((0,0),(4,4))', '<(4,4),4>', '<d/>', '{e}', '[4,5)', 4, 'four'),
  (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  -- Equal areas, different boxes and circles: = on box and circle compares areas only.
  (6, '{}', '(6,6)', '((0,0),(2,2))', '<(0,0),2>', '<e/>', '{}', NULL, 6, NULL),
  (6, '{}', '(6,6)', '((0,0),(1,4))', '<(9,9),2>', '<e/>', '{}', NULL, 6, NULL);
`

// TestKeylessTablesMatchEveryType: a table without a key (REPLICA IDENTITY FULL) whose columns
// have no plain = (json, point, xml) or one that compares less than the value (box and circle
// compare areas) gets its updates and deletes applied to the right row, one row per change when
// identical rows exist, NULLs included.
func TestKeylessTablesMatchEveryType(t *testing.T) {
	for _, dest := range destinations {
		t.Run(dest, func(t *testing.T) {
			ctx := context.Background()
			p, src, dst := setupInto(t, dest, keylessDocs)
			p.createAndLoad(t, src, dst)
			stop := p.stream(t)
			testharness.Exec(t, src,
				`UPDATE public.docs SET note = 'one' WHERE n = 1`,
				`UPDATE public.docs SET body = '{"k":  [1, 2]}', pos = '(3,4)', area = '((5,5),(6,6))', c = '<(1,1),1>', x = '<z/>', tags = '{y}', span = '[7,8)', f = 0.30000000000000004 WHERE n = 2`,
				`UPDATE public.docs SET note = 'first of two' WHERE ctid = (SELECT ctid FROM public.docs WHERE n = 3 LIMIT 1)`,
				`DELETE FROM public.docs WHERE ctid = (SELECT ctid FROM public.docs WHERE n = 4 LIMIT 1)`,
				`UPDATE public.docs SET note = 'nulls' WHERE n = 5`,
				`UPDATE public.docs SET note = 'tall box' WHERE n = 6 AND area ~= '((0,0),(1,4))'`,
				`DELETE FROM public.docs WHERE n = 6 AND area ~= '((0,0),(2,2))'`,
			)
			cols := []string{"n", "note", "body", "pos", "area", "c", "x", "tags", "span", "f"}
			testharness.Eventually(t, time.Minute, func() error {
				q := spec.QName{Schema: "public", Name: "docs"}
				return testharness.CompareRows(ctx, src, dst, q, q, cols, cols, []string{"n", "note"}, []string{"n", "note"})
			})
			var boxes string
			require.NoError(t, dst.QueryRow(ctx, `SELECT string_agg(area::text || ' ' || coalesce(note, '-'), '; ' ORDER BY note) FROM public.docs WHERE n = 6`).Scan(&boxes))
			require.Equal(t, "(1,4),(0,0) tall box", boxes, "the box changed and kept is the one the source changed")
			require.NoError(t, stop())
		})
	}
}

// TestKeylessRowsMatchedByIdentityNotEquality: in a table without a key (REPLICA IDENTITY FULL),
// rows whose values are = but not the same (jsonb 25 and 25.0, numeric 1.0 and 1.00, an interval
// of 1 day and of 24 hours, float 0 and -0, text that differs only in case under a case-insensitive
// collation) are distinct rows: the update and the delete reach the row the source changed.
func TestKeylessRowsMatchedByIdentityNotEquality(t *testing.T) {
	for _, dest := range destinations {
		t.Run(dest, func(t *testing.T) {
			ctx := context.Background()
			p, src, dst := setupInto(t, dest, `
CREATE TABLE public.people (n int, doc jsonb, amount numeric, span interval, f float8, note text);
ALTER TABLE public.people REPLICA IDENTITY FULL;
INSERT INTO public.people VALUES
  (1, '{"age": 25}', 1.0, '1 day', 0, 'x'), (1, '{"age": 25.0}', 1.0, '1 day', 0, 'x'),
  (2, '{}', 1.0, '1 day', 0, 'x'), (2, '{}', 1.00, '1 day', 0, 'x'),
  (3, '{}', 1, '1 day', 0, 'x'), (3, '{}', 1, '24 hours', 0, 'x'),
  (4, '{}', 1, '1 day', 0, 'x'), (4, '{}', 1, '1 day', '-0', 'x');`)
			p.createAndLoad(t, src, dst)
			stop := p.stream(t)
			testharness.Exec(t, src,
				`UPDATE public.people SET note = 'changed' WHERE n = 1 AND doc::text = '{"age": 25.0}'`,
				`UPDATE public.people SET note = 'changed' WHERE n = 2 AND amount::text = '1.00'`,
				`DELETE FROM public.people WHERE n = 3 AND span::text = '24:00:00'`,
				`UPDATE public.people SET note = 'changed' WHERE n = 4 AND f::text = '-0'`,
			)
			cols := []string{"n", "note", "doc", "amount", "span", "f"}
			testharness.Eventually(t, time.Minute, func() error {
				q := spec.QName{Schema: "public", Name: "people"}
				return testharness.CompareRows(ctx, src, dst, q, q, cols, cols, cols, cols)
			})
			require.NoError(t, stop())
		})
	}
}

// TestIdentityColumnThatIsNotTheKey: an identity column GENERATED ALWAYS next to the key is
// loaded and inserted with the source's values; updates leave it alone (an UPDATE may not set
// it); a source update that changes it (SET ... = DEFAULT) stops the apply naming the column,
// instead of keeping the old value.
func TestIdentityColumnThatIsNotTheKey(t *testing.T) {
	for _, dest := range destinations {
		t.Run(dest, func(t *testing.T) {
			ctx := context.Background()
			p, src, dst := setupInto(t, dest, `
CREATE TABLE public.invoices (id int PRIMARY KEY, seq int GENERATED ALWAYS AS IDENTITY (START 100), note text);
INSERT INTO public.invoices (id, note) SELECT i, 'n' || i FROM generate_series(1, 50) i;
CREATE TABLE public.ledger (seq bigint GENERATED ALWAYS AS IDENTITY, entry text);
ALTER TABLE public.ledger REPLICA IDENTITY FULL;
INSERT INTO public.ledger (entry) VALUES ('a'), ('b');`)
			p.createAndLoad(t, src, dst)
			stop := p.stream(t)
			testharness.Exec(t, src,
				`INSERT INTO public.invoices (id, note) SELECT i, 'new' FROM generate_series(51, 60) i`,
				`UPDATE public.invoices SET note = 'batched' WHERE id BETWEEN 1 AND 20`,
				`UPDATE public.invoices SET id = 1000, note = 'key changed' WHERE id = 30`,
				`DELETE FROM public.invoices WHERE id = 31`,
				`INSERT INTO public.ledger (entry) VALUES ('c')`,
				`UPDATE public.ledger SET entry = 'b2' WHERE entry = 'b'`,
			)
			testharness.Eventually(t, time.Minute, func() error {
				if err := compare(ctx, src, dst, "invoices", []string{"id", "seq", "note"}); err != nil {
					return err
				}
				return compare(ctx, src, dst, "ledger", []string{"seq", "entry"})
			})
			require.NoError(t, stop())

			testharness.Exec(t, src, `UPDATE public.invoices SET seq = DEFAULT WHERE id = 40`)
			err := p.streamError(t, nil)
			require.Equal(t, errclass.Fatal, errclass.Of(err), "%v", err)
			require.ErrorContains(t, err, "identity column seq is GENERATED ALWAYS on the destination")
			require.ErrorContains(t, err, "SET GENERATED BY DEFAULT")
			var note string
			require.NoError(t, dst.QueryRow(ctx, `SELECT note FROM public.invoices WHERE id = 40`).Scan(&note))
			require.Equal(t, "n40", note, "nothing of the failed transaction is committed")
		})
	}
}

// TestTruncateOptions: TRUNCATE ... RESTART IDENTITY restarts the destination's sequences of
// the tables; TRUNCATE ... CASCADE empties the referencing tables the source lists with it.
func TestTruncateOptions(t *testing.T) {
	ctx := context.Background()
	p, src, dst := setup(t, `
CREATE TABLE public.a_parent (id serial PRIMARY KEY, v text);
CREATE TABLE public.b_child (id int PRIMARY KEY, parent_id int REFERENCES public.a_parent (id));
INSERT INTO public.a_parent (v) SELECT 'p' FROM generate_series(1, 5);
INSERT INTO public.b_child SELECT i, i FROM generate_series(1, 5) i;`)
	testharness.Exec(t, dst, `CREATE SEQUENCE public.a_parent_id_seq`)
	p.createAndLoad(t, src, dst)
	testharness.Exec(t, dst, `ALTER SEQUENCE public.a_parent_id_seq OWNED BY public.a_parent.id`, `SELECT setval('public.a_parent_id_seq', 500)`)
	stop := p.stream(t)
	testharness.Exec(t, src, `TRUNCATE public.a_parent RESTART IDENTITY CASCADE`, `INSERT INTO public.a_parent (v) VALUES ('after')`)
	testharness.Eventually(t, time.Minute, func() error {
		if err := compare(ctx, src, dst, "a_parent", []string{"id", "v"}); err != nil {
			return err
		}
		return compare(ctx, src, dst, "b_child", []string{"id", "parent_id"})
	})
	require.NoError(t, stop())
	var last int64
	var called bool
	require.NoError(t, dst.QueryRow(ctx, `SELECT last_value, is_called FROM public.a_parent_id_seq`).Scan(&last, &called))
	require.Equal(t, []any{int64(1), false}, []any{last, called}, "RESTART IDENTITY restarted the destination's sequence")
}

// TestUnknownRelationIsNeverSkippedSilently: rows of a partition created after the stream started
// (the publication covers it through its parent) stop the stream with the partition's name; the
// changes of a table that left the publication (removed from the selection) are skipped.
func TestUnknownRelationIsNeverSkippedSilently(t *testing.T) {
	ctx := context.Background()
	p, src, dst := setup(t, `
CREATE TABLE public.m (id int, region text, v int) PARTITION BY LIST (region);
CREATE TABLE public.m_eu PARTITION OF public.m FOR VALUES IN ('eu');
CREATE TABLE public.gone (id int PRIMARY KEY);`)
	p.createAndLoad(t, src, dst)
	// public.gone leaves the selection: its earlier change is skipped, not an error.
	var kept []spec.TableMap
	for _, tm := range p.tables {
		if tm.Source.Name != "gone" {
			kept = append(kept, tm)
		}
	}
	testharness.Exec(t, src, `INSERT INTO public.gone VALUES (1)`)
	require.NoError(t, source.EnsurePublication(ctx, src, p.s.SlotName(), source.Owner(p.s.Name), kept))
	p.tables = kept
	lookup, err := p.src.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer lookup.Close(ctx)
	unknown := func(o *cdc.StreamOptions) {
		o.Unknown = func(ctx context.Context, relID uint32, name spec.QName) error {
			return source.CheckUnknownRelation(ctx, lookup, p.s.SlotName(), relID, name)
		}
	}
	stop := p.streamWith(t, unknown)
	testharness.Exec(t, src, `INSERT INTO public.m VALUES (1, 'eu', 1)`)
	testharness.Eventually(t, time.Minute, func() error { return compare(ctx, src, dst, "m_eu", []string{"id", "region", "v"}) })
	require.NoError(t, stop())

	testharness.Exec(t, src, `CREATE TABLE public.m_us PARTITION OF public.m FOR VALUES IN ('us')`,
		`INSERT INTO public.m VALUES (2, 'us', 2), (3, 'eu', 3)`)
	err = p.streamError(t, unknown)
	require.Equal(t, errclass.Fatal, errclass.Of(err), "%v", err)
	require.ErrorContains(t, err, "changes of public.m_us (OID")
	require.ErrorContains(t, err, "a partition of public.m created or attached after the task started")
	var n int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM public.m_eu WHERE id = 3`).Scan(&n))
	require.Zero(t, n, "the transaction holding the unknown partition's row is not applied in part")

	// Without a lookup, any relation outside the selection stops the stream.
	err = p.streamError(t, nil)
	require.Equal(t, errclass.Fatal, errclass.Of(err), "%v", err)
	require.ErrorContains(t, err, "public.m_us")
}

// TestOverwriteOnKeylessIdentityWithPrimaryKey: conflict_mode: ignore overwrites by the
// destination's primary key also on a table published with REPLICA IDENTITY FULL (as a table
// with a row filter is).
func TestOverwriteOnKeylessIdentityWithPrimaryKey(t *testing.T) {
	ctx := context.Background()
	p, src, dst := setup(t, `
CREATE TABLE public.f (id int PRIMARY KEY, v text);
ALTER TABLE public.f REPLICA IDENTITY FULL;`)
	p.createAndLoad(t, src, dst)
	testharness.Exec(t, dst, `INSERT INTO public.f VALUES (1, 'destination''s'), (2, 'kept')`)
	stop := p.streamWith(t, func(o *cdc.StreamOptions) { o.Upsert = true })
	testharness.Exec(t, src, `INSERT INTO public.f VALUES (1, 'source''s'), (3, 'new')`)
	testharness.Eventually(t, time.Minute, func() error {
		var got string
		if err := dst.QueryRow(ctx, `SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM public.f`).Scan(&got); err != nil {
			return err
		}
		if got != "1=source's,2=kept,3=new" {
			return errors.New(got)
		}
		return nil
	})
	require.NoError(t, stop())
}

// TestRunEndsBetweenTransactions: a run bound (RunFor) shorter than the time a transaction takes
// to arrive and apply does not cut it: the run ends after the transaction, which is applied once.
func TestRunEndsBetweenTransactions(t *testing.T) {
	ctx := context.Background()
	p, src, dst := setup(t, `CREATE TABLE public.big (id int PRIMARY KEY, v text);`)
	p.createAndLoad(t, src, dst)
	testharness.Exec(t, src, `INSERT INTO public.big SELECT i, 'v' FROM generate_series(1, 6000) i`)
	runs := 0
	for {
		runs++
		require.Less(t, runs, 5, "the transaction never completed within a run")
		started := time.Now()
		done, cancel, closeConns := p.startStream(t, func(o *cdc.StreamOptions) {
			o.RunFor = 500 * time.Millisecond
			o.Throttle = throttle.New(3000, 0) // 6,000 rows take 2 s: four times the run bound
		})
		err := <-done
		cancel()
		closeConns()
		require.NoError(t, err, "a run ends cleanly at its bound")
		var n int
		require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM public.big`).Scan(&n))
		if n == 6000 {
			require.Greater(t, time.Since(started), time.Second, "the run went past its bound to finish the transaction")
			break
		}
		require.Zero(t, n, "a transaction is applied whole or not at all")
	}
	require.Equal(t, 1, runs, "the first run applies the transaction")
}

// TestSilentSourceFailsTheStream: a network that stops forwarding without a reset (the
// connection stays open, nothing arrives) ends the stream with a connection error once the
// source leaves a reply request unanswered past SilenceLimit, instead of waiting for ever.
func TestSilentSourceFailsTheStream(t *testing.T) {
	ctx := context.Background()
	p, src, dst := setup(t, `CREATE TABLE public.q (id int PRIMARY KEY);`)
	p.createAndLoad(t, src, dst)
	proxy, err := testharness.NewProxyTo(p.src.Port)
	require.NoError(t, err)
	defer proxy.Close()
	p.s.Source.Port = proxy.Port
	testharness.Exec(t, src, `INSERT INTO public.q VALUES (1)`)
	done, cancel, closeConns := p.startStream(t, func(o *cdc.StreamOptions) { o.SilenceLimit = 2 * time.Second })
	defer closeConns()
	defer cancel()
	testharness.Eventually(t, time.Minute, func() error { return compare(ctx, src, dst, "q", []string{"id"}) })
	proxy.Stall(testharness.ToClient, time.Minute)
	started := time.Now()
	select {
	case err := <-done:
		require.Equal(t, errclass.Connection, errclass.Of(err), "%v", err)
		require.ErrorContains(t, err, "has not answered")
		require.Less(t, time.Since(started), 20*time.Second)
	case <-time.After(30 * time.Second):
		t.Fatal("the stream waits on a silent source")
	}
}
