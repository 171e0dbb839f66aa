package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/cdc"
)

// TestReportDue: an apply run signals its workflow (an event in the history) at once for what a
// person looks for there, and otherwise at most once per routine interval, never when nothing
// changed. An idle task writes about one progress event a minute.
func TestReportDue(t *testing.T) {
	base := ApplyProgress{AppliedLSN: "0/100", LagBytes: 10, LagSeconds: 1, Counts: cdc.Counts{Inserts: 5}}
	with := func(f func(p *ApplyProgress)) ApplyProgress { p := base; f(&p); return p }
	tests := []struct {
		name  string
		now   ApplyProgress
		first bool
		since time.Duration
		alert int
		want  bool
	}{
		{"the run's first report", base, true, 0, 0, true},
		{"nothing changed, long after", base, false, time.Hour, 0, false},
		{"the position moved, within the interval", with(func(p *ApplyProgress) { p.AppliedLSN = "0/200"; p.Counts.Inserts = 9000 }), false, 30 * time.Second, 0, false},
		{"the position moved, after the interval", with(func(p *ApplyProgress) { p.AppliedLSN = "0/200" }), false, time.Minute, 0, true},
		{"a schema change", with(func(p *ApplyProgress) { p.Counts.SchemaChanges = 1; p.LastSchemaChange = "ALTER TABLE" }), false, time.Second, 0, true},
		{"a table created", with(func(p *ApplyProgress) { p.TablesVersion = 1 }), false, time.Second, 0, true},
		{"a change not replicated", with(func(p *ApplyProgress) { p.NotReplicated = 1 }), false, time.Second, 0, true},
		{"the lag crosses the alert threshold", with(func(p *ApplyProgress) { p.LagSeconds = 31 }), false, time.Second, 30, true},
		{"the lag stays above it", with(func(p *ApplyProgress) { p.LagSeconds = 40 }), false, time.Second, 0, false}, // against a last report at 35 s
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := base
			if tt.now.LagSeconds == 40 {
				last.LagSeconds, tt.alert = 35, 30
			}
			require.Equal(t, tt.want, reportDue(tt.now, last, tt.first, tt.since, DefaultReportEvery, tt.alert))
		})
	}
}
