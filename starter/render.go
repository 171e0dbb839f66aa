package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/dustin/go-humanize"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/skein-dts/skein/pkg/api"
)

type listRequest = workflowservice.ListWorkflowExecutionsRequest

// quietLogger keeps the SDK's client logs out of the CLI's output.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

// tableRows is how many tables renderStatus lists unless asked for all: the tables loading come
// first, then those pending, then those done.
const tableRows = 40

// renderStatus prints a status for people: phase, lag, a progress bar per table (at most
// tableRows of them unless all), retry state.
func renderStatus(w io.Writer, st api.Status, all bool) {
	phase := st.Phase
	if st.Step != "" && st.Step != st.Phase {
		phase += " (" + st.Step + ")" // what is retried, failed or paused
	}
	fmt.Fprintf(w, "task %s  phase %s\n", st.Task, phase)
	if st.AppliedLSN != "" {
		fmt.Fprintf(w, "applied LSN %s  lag %s / %.1fs  changes: %d inserts, %d updates, %d deletes\n",
			st.AppliedLSN, humanize.IBytes(uint64(st.LagBytes)), st.LagSeconds, st.Changes.Inserts, st.Changes.Updates, st.Changes.Deletes)
	}
	if sc := st.SchemaChanges; sc.Applied+sc.Skipped+sc.NotReplicated > 0 {
		fmt.Fprintf(w, "schema changes: %d applied, %d skipped, %d not replicated\n", sc.Applied, sc.Skipped, sc.NotReplicated)
		if sc.Last != "" {
			fmt.Fprintf(w, "  last applied: %s\n", sc.Last)
		}
		if sc.LastNotReplicated != "" {
			fmt.Fprintf(w, "  last not replicated: %s\n", sc.LastNotReplicated)
		}
	}
	if len(st.Tables) > 0 {
		fmt.Fprintln(w)
		tables := st.Tables
		if len(tables) > tableRows && !all {
			tables = summarizeTables(w, st.Tables)
		}
		fmt.Fprintf(w, "%-32s %-32s %-8s %-24s %s\n", "SOURCE", "DESTINATION", "STATE", "PROGRESS", "ROWS")
		for _, t := range tables {
			reloaded := ""
			if t.Reloads > 0 {
				reloaded = fmt.Sprintf("  (loaded again %d× in a new snapshot)", t.Reloads)
			}
			if t.Note != "" {
				reloaded += "  (" + t.Note + ")"
			}
			fmt.Fprintf(w, "%-32s %-32s %-8s %-24s %d/%d  %s%s\n", t.Source, t.Destination, t.State,
				bar(t.RowsCopied, t.RowsEstimate, t.State == api.TableDone), t.RowsCopied, t.RowsEstimate,
				humanize.IBytes(uint64(t.BytesCopied)), reloaded)
		}
	}
	if st.Retry.Attempts > 0 {
		fmt.Fprintf(w, "\nretrying: %s error, %d attempts since %s (window %d min)\n",
			st.Retry.Class, st.Retry.Attempts, st.Retry.Since, st.Retry.WindowMinutes)
	}
	for _, it := range st.Precheck {
		if !it.Passed {
			fmt.Fprintf(w, "precheck %s (%s): %s\n  fix: %s\n", it.ID, it.Level, it.Detail, it.Fix)
		}
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "\nlast error: %s\n", st.LastError)
	}
}

// summarizeTables prints the totals of many tables and returns the tableRows to list: loading,
// then pending, then done.
func summarizeTables(w io.Writer, all []api.TableStatus) []api.TableStatus {
	count := map[string]int{}
	var rows, estimate, bytes int64
	for _, t := range all {
		count[t.State]++
		rows += t.RowsCopied
		estimate += max(t.RowsEstimate, t.RowsCopied)
		bytes += t.BytesCopied
	}
	fmt.Fprintf(w, "%d tables: %d loading, %d pending, %d done  %s %d/%d rows  %s\n", len(all),
		count[api.TableLoading], count[api.TablePending], count[api.TableDone],
		bar(rows, estimate, count[api.TableDone] == len(all)), rows, estimate, humanize.IBytes(uint64(bytes)))
	var shown []api.TableStatus
	for _, state := range []string{api.TableLoading, api.TablePending, api.TableDone} {
		for _, t := range all {
			if t.State == state && len(shown) < tableRows {
				shown = append(shown, t)
			}
		}
	}
	fmt.Fprintf(w, "(%d of them below; skein status --all lists every table)\n", len(shown))
	return shown
}

// renderPrecheck prints the precheck items as a table, with the fix under each failed item.
func renderPrecheck(w io.Writer, items []api.Item, ignore []string) {
	fmt.Fprintf(w, "%-24s %-8s %-8s %s\n", "ITEM", "LEVEL", "RESULT", "DETAIL")
	for _, it := range items {
		result := "ok"
		switch {
		case it.Passed:
		case it.Blocking(ignore):
			result = "FAILED"
		default:
			result = "ignored"
		}
		fmt.Fprintf(w, "%-24s %-8s %-8s %s\n", it.ID, it.Level, result, it.Detail)
		if !it.Passed && it.Fix != "" {
			fmt.Fprintf(w, "%-42s fix: %s\n", "", it.Fix)
		}
	}
}

func bar(done, total int64, complete bool) string {
	const width = 20
	frac := 0.0
	switch {
	case complete:
		frac = 1
	case total > 0:
		frac = min(float64(done)/float64(total), 0.99)
	}
	n := int(frac * width)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100)
}
