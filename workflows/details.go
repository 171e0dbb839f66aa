package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/skein-dts/skein/pkg/api"
)

// internalHandler starts the description of a handler that Skein's own parts use: the UI lists
// every handler, and this says not to send or run it by hand.
const internalHandler = "Internal to Skein, not for use by hand: "

// showCurrentDetails keeps the workflow's current details (the Markdown the Temporal UI shows on
// the workflow's page, and `temporal workflow describe` prints) in step with the status: it sets
// them whenever their text changes. They are not history events.
func (w *task) showCurrentDetails(ctx workflow.Context) {
	workflow.Go(ctx, func(ctx workflow.Context) {
		shown := ""
		for {
			var next string
			if err := workflow.Await(ctx, func() bool { next = w.currentDetails(); return next != shown }); err != nil {
				return
			}
			workflow.SetCurrentDetails(ctx, next)
			shown = next
		}
	})
}

// maxDetailTables bounds the tables the current details list (those loading first).
const maxDetailTables = 8

// currentDetails renders the status as a short Markdown text: what the task is doing now.
func (w *task) currentDetails() string {
	st := &w.status
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**", st.Phase)
	if st.Step != "" && st.Step != st.Phase {
		fmt.Fprintf(&b, " (step: %s)", st.Step)
	}
	b.WriteString("\n\n")
	if st.Retry.Attempts > 0 {
		fmt.Fprintf(&b, "Retrying %s errors since %s: attempt %d of a %d-minute window\n\n", st.Retry.Class, st.Retry.Since, st.Retry.Attempts, st.Retry.WindowMinutes)
	}
	if st.LastError != "" {
		fmt.Fprintf(&b, "Last error: %s\n\n", oneLine(st.LastError, 300))
	}
	var done, rows, estimate int64
	var loading []api.TableStatus
	for _, t := range st.Tables {
		rows += t.RowsCopied
		estimate += t.RowsEstimate
		if t.State == api.TableDone {
			done++
		} else if t.State == api.TableLoading && len(loading) < maxDetailTables {
			loading = append(loading, t)
		}
	}
	if len(st.Tables) > 0 {
		fmt.Fprintf(&b, "Tables: %d of %d loaded, %d rows copied", done, len(st.Tables), rows)
		if estimate > 0 && done < int64(len(st.Tables)) {
			fmt.Fprintf(&b, " (about %d estimated)", estimate)
		}
		b.WriteString("\n")
		for _, t := range loading {
			fmt.Fprintf(&b, "- %s: %d of %d chunks, %d rows\n", t.Source, t.ChunksDone, t.Chunks, t.RowsCopied)
		}
		b.WriteString("\n")
	}
	if st.AppliedLSN != "" {
		fmt.Fprintf(&b, "Applied through %s; lag %d bytes, %.0f s (as of the last report; `skein status` shows the live figures)\n\n", st.AppliedLSN, st.LagBytes, st.LagSeconds)
	}
	if sc := st.SchemaChanges; sc.Applied+sc.Skipped+sc.NotReplicated > 0 {
		fmt.Fprintf(&b, "Schema changes: %d applied, %d skipped, %d not replicated", sc.Applied, sc.Skipped, sc.NotReplicated)
		if sc.Last != "" {
			fmt.Fprintf(&b, "; last: %s", oneLine(sc.Last, 200))
		}
		b.WriteString("\n")
	}
	return strings.TrimSpace(b.String())
}

// oneLine shortens text to one line of at most n bytes.
func oneLine(text string, n int) string {
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > n {
		return text[:n] + "…"
	}
	return text
}
