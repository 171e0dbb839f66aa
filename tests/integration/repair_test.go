package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
	"github.com/skein-dts/skein/workflows"
)

// repairTables adds a table with a composite key and a partitioned table to the shop schema.
const repairTables = `
CREATE TABLE shop.lines (order_id int, line int, qty int, note text, PRIMARY KEY (order_id, line));
INSERT INTO shop.lines SELECT 1 + i / 4, i % 4, i, 'n' || i FROM generate_series(0, 3999) i;
CREATE TABLE shop.metrics (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE shop.metrics_h1 PARTITION OF shop.metrics FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
CREATE TABLE shop.metrics_h2 PARTITION OF shop.metrics FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
INSERT INTO shop.metrics SELECT i, DATE '2024-01-01' + i % 360, 'v' || i FROM generate_series(1, 2000) i;`

// repairChecks are the tables compared row by row after a repair: the shop's and repairTables'.
var repairChecks = append(append([]tableCheck{}, shopChecks...),
	tableCheck{src: spec.QName{Schema: "shop", Name: "lines"}, dst: spec.QName{Schema: "mart", Name: "lines"},
		srcCols: []string{"order_id", "line", "qty", "note"}, srcKey: []string{"order_id", "line"}},
	tableCheck{src: spec.QName{Schema: "shop", Name: "metrics_h1"}, dst: spec.QName{Schema: "mart", Name: "metrics_h1"},
		srcCols: []string{"id", "at", "v"}, srcKey: []string{"id", "at"}},
	tableCheck{src: spec.QName{Schema: "shop", Name: "metrics_h2"}, dst: spec.QName{Schema: "mart", Name: "metrics_h2"},
		srcCols: []string{"id", "at", "v"}, srcKey: []string{"id", "at"}},
)

// repairSpec is the shop task with repairTables selected.
func repairSpec(name string, srcPG, dstPG *testharness.Postgres) spec.Spec {
	s := shopSpec(name, srcPG, dstPG)
	s.Objects[0].Tables = append(s.Objects[0].Tables, spec.Table{Name: "lines"}, spec.Table{Name: "metrics"})
	return s
}

// repairLoad writes to every kind of table on the source, now and then also to rows the
// tampering touches (a row changed all the time is reported as changing, never proven either way).
func repairLoad(i int) []string {
	hot := 1 + (i*7919)%20000
	if i%40 == 0 {
		hot = []int{5, 12, 15, 300, 14500}[i/40%5]
	}
	return []string{
		fmt.Sprintf(`INSERT INTO shop.orders (customer_id, amount) VALUES (%d, %d)`, 1+i%1000, i),
		fmt.Sprintf(`UPDATE shop.orders SET amount = amount + 1 WHERE id = %d`, hot),
		fmt.Sprintf(`DELETE FROM shop.orders WHERE id = %d`, 100+(i*104729)%19000),
		fmt.Sprintf(`UPDATE shop.lines SET qty = qty + 1 WHERE order_id = %d`, 1+i%1000),
		fmt.Sprintf(`UPDATE shop.metrics SET v = 'w%d' WHERE id = %d`, i, 1+i%2000),
		fmt.Sprintf(`INSERT INTO shop.events VALUES (now(), 'w', '%d')`, i),
		fmt.Sprintf(`UPDATE shop.customers SET note = 'w%d' WHERE id = %d`, i, 1+(i*31)%2000),
	}
}

// tamper changes the destination behind the task's back: rows deleted, changed and added on
// keyed, composite-key, keyless and partitioned tables, some of them rows the load changes too,
// and one key range with so many changed rows that it is re-copied whole.
func tamper(t *testing.T, dst *pgx.Conn) {
	// Statement by statement, each tried again when it deadlocks with the apply (which takes
	// the rows of its batch in the source's order).
	for _, stmt := range strings.Split(`DELETE FROM mart.orders WHERE id IN (5, 12);
UPDATE mart.orders SET amount = amount + 1000 WHERE id IN (15, 300);
UPDATE mart.orders SET "Mixed Case" = 'tampered' WHERE id BETWEEN 14001 AND 15500;
INSERT INTO mart.orders (id, customer_id, amount) VALUES (900001, 1, 1);
UPDATE mart.clients SET remark = 'tampered' WHERE id = 7;
DELETE FROM mart.lines WHERE order_id = 7 AND line = 1;
UPDATE mart.lines SET qty = -1 WHERE order_id = 8 AND line = 2;
INSERT INTO mart.lines VALUES (99999, 1, 1, 'extra');
DELETE FROM mart.events WHERE ctid = (SELECT ctid FROM mart.events WHERE kind = 'dup' LIMIT 1);
INSERT INTO mart.events SELECT * FROM mart.events WHERE kind = 'kind1' LIMIT 1;
INSERT INTO mart.events VALUES ('2030-01-01', 'ghost', NULL);
DELETE FROM mart.metrics_h1 WHERE id = 3;
UPDATE mart.metrics_h2 SET v = 'tampered' WHERE id = 200;
INSERT INTO mart.metrics_h2 VALUES (90000, '2024-09-01', 'extra')`, ";\n") {
		testharness.Eventually(t, 30*time.Second, func() error {
			_, err := dst.Exec(context.Background(), stmt)
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code != "40P01" {
				t.Fatalf("%s: %v", stmt, err)
			}
			return err
		})
	}
}

// TestRepairWhileStreaming tampers with the destination while a task streams under a steady
// write load, runs `skein verify --repair`, and then, with the load still running, verifies again
// (clean) and, once the load stops and the lag is zero, compares every table row by row: equal.
func TestRepairWhileStreaming(t *testing.T) {
	parallel(t)
	eachDestination(t, testRepairWhileStreaming)
}

func testRepairWhileStreaming(t *testing.T) {
	bin := buildSkein(t)
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	testharness.Exec(t, src, repairTables)
	c := startWorker(t, t.TempDir())
	run := startTask(t, c, repairSpec("it-repair", srcPG, dstPG), nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)

	stopWriter := startWriter(t, srcPG, 5*time.Millisecond, repairLoad)
	defer stopWriter()
	time.Sleep(time.Second)
	tamper(t, dst)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, time.Minute) // the tampering may have made the apply retry

	r := runSkein(t, bin, "verify", run.GetID(), "--repair", "--json")
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	var rep api.VerifyReport
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
	require.False(t, rep.Equal, "the tampering was found")
	require.True(t, rep.Repaired, "and repaired")
	require.NotEmpty(t, rep.RepairPosition)
	repaired := map[string]*api.TableRepair{}
	for _, tr := range rep.Tables {
		if !tr.Equal {
			require.NotNil(t, tr.Repair, "%s differs and has a repair", tr.Source)
			repaired[tr.Source] = tr.Repair
		}
	}
	for _, table := range []string{"shop.orders", "shop.customers", "shop.lines", "shop.events", "shop.metrics_h1", "shop.metrics_h2"} {
		require.Contains(t, repaired, table)
		require.Positive(t, repaired[table].Deleted+repaired[table].Inserted, table)
	}
	last := status(t, c, run.GetID()).LastRepair
	require.NotNil(t, last, "the task's status shows the repair")
	t.Logf("repair at %s: barrier %.3f s, catch-up %.3f s, writes %.3f s", last.Position, last.BarrierSeconds, last.CatchUpSeconds, last.WriteSeconds)

	r = runSkein(t, bin, "verify", run.GetID())
	require.Equal(t, 0, r.code, "a second verification, under the same load, is clean:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)

	rounds := stopWriter()
	require.Greater(t, rounds, 50, "the source took writes throughout")
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, repairChecks) })
}

// TestRepairRefused: a task with conflict_mode ignore keeps destination rows that differ on
// purpose: verify --repair is refused before anything runs, and nothing on the destination
// changes.
func TestRepairRefused(t *testing.T) {
	parallel(t)
	bin := buildSkein(t)
	srcPG, dstPG, _, dst := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	s := shopSpec("it-repair-refused", srcPG, dstPG)
	s.ConflictMode = spec.ConflictIgnore
	run := startTask(t, c, s, nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	testharness.Exec(t, dst, `UPDATE mart.orders SET amount = 0 WHERE id = 1`)
	r := runSkein(t, bin, "verify", run.GetID(), "--repair")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "conflict_mode ignore")
	var amount float64
	require.NoError(t, dst.QueryRow(context.Background(), `SELECT amount FROM mart.orders WHERE id = 1`).Scan(&amount))
	require.Zero(t, amount)
}

// TestRepairDoesNotJoinAVerificationWithout: one verification runs per task, and a second
// skein verify joins it; one asked to repair refuses to join one that does not repair, naming
// it, instead of reporting differences it was asked to fix.
func TestRepairDoesNotJoinAVerificationWithout(t *testing.T) {
	parallel(t)
	bin := buildSkein(t)
	srcPG, dstPG, _, _ := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	run := startTask(t, c, shopSpec("it-repair-join", srcPG, dstPG), nil)
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	// A verification that stays running: on a task queue no worker polls.
	ctx := context.Background()
	verifyRun, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "nobody-polls", ID: api.VerifyWorkflowID(run.GetID())},
		api.VerifyWorkflowName, api.VerifyRequest{Task: run.GetID()})
	require.NoError(t, err)
	defer c.TerminateWorkflow(ctx, verifyRun.GetID(), "", "test over") //nolint:errcheck // best effort
	r := runSkein(t, bin, "verify", run.GetID(), "--repair")
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "a verification of task it-repair-join without repair is running (workflow it-repair-join-verify)")
}

// TestRepairSurvivesWorkerKill kills the worker process while the repair waits on the
// destination (a lock, held by the test, on a table the load does not write): the apply run is
// retried by another worker process, repairs at a new position, and the result is exact.
func TestRepairSurvivesWorkerKill(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	p := startProcessTask(t, "it-repair-kill", repairTables, "lines", func(s *spec.Spec) {
		s.Objects[0].Tables = append(s.Objects[0].Tables, spec.Table{Name: "metrics"})
	})
	waitPhase(t, p.c, p.run.GetID(), api.PhaseIncremental, 3*time.Minute)
	stopWriter := startWriter(t, p.srcPG, 5*time.Millisecond, repairLoad)
	defer stopWriter()
	tamper(t, p.dst)
	testharness.Exec(t, p.dst, `UPDATE mart.profiles SET mood = 'sad' WHERE id = 10`)
	waitPhase(t, p.c, p.run.GetID(), api.PhaseIncremental, time.Minute)

	// The repair takes the tables in the order of their source names: a lock on mart.profiles
	// (last) holds it in its destination transaction with every other table written.
	locker, err := p.dstPG.Connect(ctx, "target")
	require.NoError(t, err)
	defer locker.Close(ctx)
	lock, err := locker.Begin(ctx)
	require.NoError(t, err)
	_, err = lock.Exec(ctx, `LOCK TABLE mart.profiles IN SHARE MODE`)
	require.NoError(t, err)

	verifyRun, err := p.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: api.TaskQueue, ID: api.VerifyWorkflowID(p.run.GetID())},
		api.VerifyWorkflowName, api.VerifyRequest{Task: p.run.GetID(), Repair: true})
	require.NoError(t, err)
	testharness.Eventually(t, 2*time.Minute, func() error {
		var waiting int
		if err := p.dst.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM ONLY "mart"."profiles"%'`).Scan(&waiting); err != nil {
			return err
		}
		if waiting == 0 {
			return fmt.Errorf("the repair does not wait on the lock yet")
		}
		return nil
	})
	p.first.kill(t)
	require.NoError(t, lock.Rollback(ctx))
	p.another(t)

	var rep api.VerifyReport
	require.NoError(t, verifyRun.Get(ctx, &rep))
	require.True(t, rep.Repaired, "%+v", rep)
	stopWriter()
	testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, p.src, p.dst, repairChecks) })
}

// TestScheduledVerificationRepairs: an idle task with verify.every_minutes (shortened here) and
// verify.repair finds a tampered row and repairs it without being asked; its status and the
// task's history show the report.
func TestScheduledVerificationRepairs(t *testing.T) {
	parallel(t)
	eachDestination(t, testScheduledVerificationRepairs)
}

func testScheduledVerificationRepairs(t *testing.T) {
	ctx := context.Background()
	srcPG, dstPG, src, dst := shopPair(t, true)
	c := startWorker(t, t.TempDir())
	// A name per destination: the first subtest's last scheduled verification may outlive it
	// (it retries its connections for the task's retry window), and would hold the second's turn.
	s := shopSpec("it-repair-schedule-"+path.Base(t.Name()), srcPG, dstPG)
	s.Verify = spec.Verify{SamplePercent: 50, EveryMinutes: 60, Repair: true}
	run := startTask(t, c, s, &workflows.Carry{Tuning: workflows.Tuning{VerifyEvery: 3 * time.Second}})
	waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
	testharness.Exec(t, dst, `UPDATE mart.orders SET amount = 0 WHERE id = 1;
DELETE FROM mart.orders WHERE id = 19999;
INSERT INTO mart.clients (id, name) VALUES (900000, 'ghost')`)
	// Half the chunks each round, by turn: two rounds cover every chunk.
	testharness.Eventually(t, 2*time.Minute, func() error { return compareAll(ctx, src, dst, shopChecks) })
	st := status(t, c, run.GetID())
	require.NotNil(t, st.LastRepair, "the task repaired by itself")
	require.NoError(t, c.SignalWorkflow(ctx, run.GetID(), "", api.SignalRelease, nil))
	require.NoError(t, run.Get(ctx, nil))
	recordHistory(t, c, run.GetID(), "scheduled-verify-repair-release")
}
