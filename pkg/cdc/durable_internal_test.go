package cdc

import (
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
)

// TestFlushGate: a source position is confirmed only once the destination's WAL is flushed past
// every commit recorded before it was reached, in order, however the reports interleave.
func TestFlushGate(t *testing.T) {
	type step struct {
		commit, flushed pglogrepl.LSN // committed(commit, flushed) when commit > 0
		reach           pglogrepl.LSN // reached(reach) when > 0
		flushTo         pglogrepl.LSN // flushedTo(flushTo) when > 0
		confirmed       pglogrepl.LSN // expected after the step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a commit flushed when made is confirmed at once", []step{
			{commit: 100, flushed: 100, reach: 10, confirmed: 10},
		}},
		{"an unflushed commit waits for the flush", []step{
			{commit: 100, flushed: 50, reach: 10, confirmed: 0},
			{flushTo: 99, confirmed: 0},
			{flushTo: 100, confirmed: 10},
		}},
		{"a later commit's report releases the earlier ones", []step{
			{commit: 100, flushed: 50, reach: 10},
			{commit: 200, flushed: 150, reach: 20, confirmed: 10},
			{commit: 300, flushed: 250, reach: 30, confirmed: 20},
		}},
		{"positions without commits wait for the commits before them", []step{
			{commit: 100, flushed: 50, reach: 10},
			{reach: 15, confirmed: 0}, // an idle WAL end: depends on the commit at 100
			{flushTo: 100, confirmed: 15},
			{reach: 18, confirmed: 18}, // nothing unflushed: at once
		}},
		{"lanes report out of order: the highest commit counts", []step{
			{commit: 300, flushed: 0},
			{commit: 200, flushed: 0, reach: 10},
			{flushTo: 250, confirmed: 0},
			{flushTo: 300, confirmed: 10},
		}},
		{"positions never go back", []step{
			{commit: 100, flushed: 100, reach: 20, confirmed: 20},
			{reach: 10, confirmed: 20},
			{commit: 200, flushed: 100, reach: 15, confirmed: 20},
			{flushTo: 200, confirmed: 20},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g flushGate
			for i, s := range tc.steps {
				if s.commit > 0 {
					g.committed(s.commit, s.flushed)
				}
				if s.reach > 0 {
					g.reached(s.reach)
				}
				if s.flushTo > 0 {
					g.flushedTo(s.flushTo)
				}
				require.Equal(t, s.confirmed, g.confirmed, "step %d", i)
			}
		})
	}
}
