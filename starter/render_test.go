package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
)

func TestRenderStatusSummarizesManyTables(t *testing.T) {
	tablesOf := func(n int) []api.TableStatus {
		ts := make([]api.TableStatus, n)
		for i := range ts {
			ts[i] = api.TableStatus{Source: fmt.Sprintf("s.t%d", i), Destination: fmt.Sprintf("d.t%d", i),
				State: api.TableDone, RowsCopied: 10, RowsEstimate: 10}
		}
		if n > 5 {
			ts[n-1].State, ts[n-1].RowsCopied = api.TableLoading, 3
			ts[n-2].State, ts[n-2].RowsCopied = api.TablePending, 0
		}
		return ts
	}
	for _, tc := range []struct {
		name     string
		tables   int
		all      bool
		rows     int
		summary  string
		firstRow string
	}{
		{"few tables: every one, no totals", 3, false, 3, "", "s.t0"},
		{"many tables: totals, loading and pending first", 10000, false, tableRows,
			"10000 tables: 1 loading, 1 pending, 9998 done", "s.t9999"},
		{"many tables with --all: every one", 10000, true, 10000, "", "s.t0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			renderStatus(&out, api.Status{Task: "t", Phase: api.PhaseFullLoad, Tables: tablesOf(tc.tables)}, tc.all)
			text := out.String()
			var rows []string
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(line, "s.t") {
					rows = append(rows, line)
				}
			}
			require.Len(t, rows, tc.rows)
			require.True(t, strings.HasPrefix(rows[0], tc.firstRow+" "), rows[0])
			if tc.summary != "" {
				require.Contains(t, text, tc.summary)
				require.Contains(t, text, "99983/100000 rows")
			} else {
				require.NotContains(t, text, " tables: ")
			}
		})
	}
}

func TestRenderStatusShowsSchemaChanges(t *testing.T) {
	var b strings.Builder
	renderStatus(&b, api.Status{Task: "t", Phase: api.PhaseIncremental, SchemaChanges: api.SchemaChanges{
		Applied: 3, Skipped: 1, NotReplicated: 2, Last: "ALTER TABLE: ALTER TABLE app.a ADD COLUMN c int",
		LastNotReplicated: "view app.v (CREATE VIEW) is not replicated while streaming"}}, false)
	out := b.String()
	require.Contains(t, out, "schema changes: 3 applied, 1 skipped, 2 not replicated")
	require.Contains(t, out, "last applied: ALTER TABLE: ALTER TABLE app.a ADD COLUMN c int")
	require.Contains(t, out, "last not replicated: view app.v")
	b.Reset()
	renderStatus(&b, api.Status{Task: "t", Phase: api.PhaseIncremental}, false)
	require.NotContains(t, b.String(), "schema changes")
}

func TestRenderVerifySaysWhatWasRepaired(t *testing.T) {
	tests := []struct {
		name   string
		repair *api.TableRepair
		want   string
	}{
		{"rows", &api.TableRepair{Deleted: 1, Inserted: 2}, "repaired: 1 row deleted, 2 rows written from the source"},
		{"refused", &api.TableRepair{Refused: "operations leave out deletes"}, "not repaired: operations leave out deletes"},
		{"pending", &api.TableRepair{Pending: true}, "not repaired yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			renderVerify(&out, api.VerifyReport{Task: "shop", Tables: []api.TableResult{
				{Source: "shop.orders", Destination: "shop.orders", Missing: 1, Repair: tt.repair}}})
			require.Contains(t, out.String(), tt.want)
		})
	}
}
