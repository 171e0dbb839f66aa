package bench

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// benchRuns is BENCH_RUNS (default 3; 5 for the README's figures): each benchmark measures Skein
// and its anchors alternately this many times and prints each figure's median and range.
func benchRuns() int { return max(1, envInt("BENCH_RUNS", 3)) }

// spread is one figure measured once per run.
type spread []float64

// median is the middle value (the mean of the two middle ones for an even count).
func (s spread) median() float64 {
	if len(s) == 0 {
		return 0
	}
	v := slices.Sorted(slices.Values(s))
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// format prints the median and the range with verb (e.g. "%.2fx"): "1.21x (1.10x-1.31x, 5 runs)".
func (s spread) format(verb string) string {
	if len(s) == 0 {
		return "-"
	}
	lo, hi := slices.Min(s), slices.Max(s)
	if len(s) == 1 {
		return fmt.Sprintf(verb+" (1 run)", s[0])
	}
	return fmt.Sprintf(verb+" ("+verb+"-"+verb+", %d runs)", s.median(), lo, hi, len(s))
}

// loadAverage is the machine's 1-minute load average (/proc/loadavg), printed before each run:
// a busy machine makes a run an outlier, and says so.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(raw))[0]
}
