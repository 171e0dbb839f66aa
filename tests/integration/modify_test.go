package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// TestModifyObjects adds two tables to a streaming task and removes one, with writes on every
// table throughout: the added tables arrive complete (schema, full load, then their changes, none
// lost or doubled) while the others keep streaming; the removed table stops following; a bad list
// is rejected without a trace in the history.
func TestModifyObjects(t *testing.T) {
	parallel(t)
	bin := buildSkein(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	testharness.Exec(t, src, `CREATE TABLE shop.extra (id int PRIMARY KEY, v text, n int);
INSERT INTO shop.extra SELECT i, 'v' || i, i FROM generate_series(1, 20000) i;
ANALYZE`)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-modify", srcPG, dstPG)
	s.Objects[0].Tables = []spec.Table{
		{Name: "customers", To: "clients", Columns: map[string]string{"note": "remark"}},
		{Name: "orders"},
	}
	s.Verify.Mode = spec.VerifyCount
	// A small history limit: the task continues as new around the update (never during it).
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{ApplyReportEvery: 200 * time.Millisecond, ApplyMaxRun: 20 * time.Second, HistoryLimit: 120}})
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	stopWriter := startWriter(t, srcPG, 5*time.Millisecond, func(i int) []string {
		return []string{
			fmt.Sprintf(`INSERT INTO shop.extra VALUES (%d, 'new', %d)`, 100000+i, i),
			fmt.Sprintf(`UPDATE shop.extra SET n = n + 1, v = 'u%d' WHERE id = %d`, i, 1+(i*7919)%20000),
			fmt.Sprintf(`DELETE FROM shop.extra WHERE id = %d`, 1+(i*104729)%20000),
			fmt.Sprintf(`UPDATE shop.customers SET note = 'm%d' WHERE id = %d`, i, 1+(i*31)%2000),
			fmt.Sprintf(`UPDATE shop.profiles SET score = score + 1 WHERE id = %d`, 1+i%300),
			fmt.Sprintf(`INSERT INTO shop.orders (customer_id, amount) VALUES (%d, %d)`, 1+i%1000, i),
		}
	})
	defer stopWriter()

	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	// modifyRaw sends modify-objects with JSON as `temporal workflow update execute --input` does
	// and waits for its result.
	modifyRaw := func(objects string) error {
		h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: run.GetID(), UpdateName: api.UpdateModifyObjects,
			Args: []any{json.RawMessage(objects)}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			err = h.Get(ctx, nil)
		}
		return err
	}
	t.Run("a bad list is rejected and leaves no trace", func(t *testing.T) {
		r := runSkein(t, bin, "modify", run.GetID(), "-f", write("bad.yaml", `
- schema: shop
  to: mart
  tables:
    - {name: customers, to: clients, columns: {note: remark}}
    - {name: extra, to: "clients"}
`))
		require.Equal(t, 2, r.code, r.stderr)
		require.Contains(t, r.stderr, `objects[0].tables[1].to: maps to "mart"."clients"`)
		r = runSkein(t, bin, "modify", run.GetID(), "-f", write("unknown.yaml", "- {schema: shop, colour: blue}\n"))
		require.Equal(t, 2, r.code, r.stderr)
		require.Contains(t, r.stderr, `objects[0].colour: unknown field`)
		// The same through the Temporal client as `temporal workflow update execute --input` sends it.
		require.ErrorContains(t, modifyRaw(`[{"schema":"shop","to":"mart","tables":[{"name":"customers","to":"clients","colums":{"note":"remark"}}]}]`),
			`objects[0].tables[0].colums: unknown field`)
		require.Zero(t, countEvents(t, c, run.GetID(), enums.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED))
	})
	t.Run("a table the source lacks: the update returns why, the task streams on unchanged", func(t *testing.T) {
		r := runSkein(t, bin, "modify", run.GetID(), "-f", write("missing.yaml", `
- schema: shop
  to: mart
  tables:
    - {name: customers, to: clients, columns: {note: remark}}
    - {name: orders}
    - {name: no_such_table}
`))
		require.Equal(t, 2, r.code, r.stderr)
		require.Contains(t, r.stderr, `table "shop"."no_such_table" does not exist on the source`)
		require.ErrorContains(t, modifyRaw(`[{"schema":"nope"}]`), `schema "nope" does not exist on the source`)
		st := status(t, c, run.GetID())
		require.Equal(t, api.PhaseIncremental, st.Phase)
		require.Empty(t, st.LastError)
		require.Equal(t, api.RetryState{}, st.Retry)
		require.Len(t, st.Tables, 2, "the task's tables are as they were")
		var slots int
		require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, spec.SlotNameFor(s.Helper().Name)).Scan(&slots))
		require.Zero(t, slots, "no helper slot was made")

		// A table that exists on the destination already fails the added tables' precheck:
		// refused before anything is created, the task unchanged.
		testharness.Exec(t, src, `CREATE TABLE shop.taken (id int PRIMARY KEY)`)
		testharness.Exec(t, dst, `CREATE TABLE mart.taken (id int PRIMARY KEY, other text)`)
		err := modifyRaw(`[{"schema":"shop","to":"mart","tables":[{"name":"customers","to":"clients","columns":{"note":"remark"}},{"name":"orders"},{"name":"taken"}]}]`)
		require.ErrorContains(t, err, "conflicting_tables")
		require.ErrorContains(t, err, "mart.taken")
		st = status(t, c, run.GetID())
		require.Equal(t, api.PhaseIncremental, st.Phase)
		require.Empty(t, st.LastError)
		require.Len(t, st.Tables, 2)
		require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, spec.SlotNameFor(s.Helper().Name)).Scan(&slots))
		require.Zero(t, slots, "no helper slot was made")
	})

	time.Sleep(time.Second)
	r := runSkein(t, bin, "modify", run.GetID(), "-f", write("objects.yaml", `
objects:
  - schema: shop
    to: mart
    tables:
      - {name: customers, to: clients, columns: {note: remark}}
      - {name: extra, to: extra2, columns: {v: value}}
      - {name: profiles}
`))
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "added: shop.extra, shop.profiles")
	require.Contains(t, r.stdout, "removed: shop.orders")
	time.Sleep(2 * time.Second) // writes go on after the switch
	require.Greater(t, stopWriter(), 100)

	checks := []tableCheck{shopChecks[0], shopChecks[2], {
		src: spec.QName{Schema: "shop", Name: "extra"}, dst: spec.QName{Schema: "mart", Name: "extra2"},
		srcCols: []string{"id", "v", "n"}, dstCols: []string{"id", "value", "n"}, srcKey: []string{"id"},
	}}
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, checks) })

	// The removed table stops following; the publication holds the new selection; no helper is left.
	var before int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM mart.orders`).Scan(&before))
	testharness.Exec(t, src, `INSERT INTO shop.orders (customer_id, amount) VALUES (1, 1); UPDATE shop.customers SET note = 'last' WHERE id = 1`)
	testharness.Eventually(t, 30*time.Second, func() error { return compareAll(ctx, src, dst, checks) })
	var after int
	require.NoError(t, dst.QueryRow(ctx, `SELECT count(*) FROM mart.orders`).Scan(&after))
	require.Equal(t, before, after, "a removed table is not applied any more")
	rows, err := src.Query(ctx, `SELECT tablename::text FROM pg_publication_tables WHERE pubname = 'skein_it_modify' ORDER BY 1`)
	require.NoError(t, err)
	published, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"customers", "extra", "profiles"}, published)
	var n int
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name <> 'skein_it_modify'`).Scan(&n))
	require.Zero(t, n, "the helper slot is gone")
	require.NoError(t, src.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname <> 'skein_it_modify'`).Scan(&n))
	require.Zero(t, n, "the helper publication is gone")

	st := status(t, c, run.GetID())
	var names []string
	for _, ts := range st.Tables {
		names = append(names, ts.Source)
		require.Equal(t, api.TableDone, ts.State, ts.Source)
	}
	slices.Sort(names)
	require.Equal(t, []string{"shop.customers", "shop.extra", "shop.profiles"}, names)

	// On-demand verification compares the new selection.
	rep := verifyTask(t, c, run.GetID())
	require.True(t, rep.Equal, "%+v", rep)
	require.Len(t, rep.Tables, 3)

	desc, err := c.DescribeWorkflowExecution(ctx, run.GetID(), "")
	require.NoError(t, err)
	require.NotEqual(t, run.GetRunID(), desc.WorkflowExecutionInfo.Execution.RunId, "the task continued as new meanwhile")

	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalRelease, nil))
	require.NoError(t, c.GetWorkflow(ctx, run.GetID(), "").Get(ctx, nil))
	recordHistory(t, c, run.GetID(), "modify-verify-release")
}

// countEvents counts a workflow's history events of one type, over all its runs' current one.
func countEvents(t *testing.T, c client.Client, id string, typ enums.EventType) int {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, enums.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if ev.GetEventType() == typ {
			n++
		}
	}
	return n
}
