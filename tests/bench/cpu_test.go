package bench

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/testharness"
)

// clockTicks is the kernel's USER_HZ, the unit of the CPU times in /proc/<pid>/stat.
const clockTicks = 100

// clusterCPU is the CPU time a PostgreSQL cluster has used so far: its postmaster's, with its
// ended children's, and its live children's.
func clusterCPU(b *testing.B, pg *testharness.Postgres) time.Duration {
	b.Helper()
	pidFile, err := os.ReadFile(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	require.NoError(b, err)
	postmaster := strings.SplitN(string(pidFile), "\n", 2)[0]
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(b, err)
	var ticks int64
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // ended meanwhile: its time is in the postmaster's children's
		}
		// The fields after the command name (which may hold spaces), from field 3 on.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
		pid := strings.TrimSuffix(strings.TrimPrefix(filepath.Dir(p), "/proc/"), "/")
		switch {
		case pid == postmaster: // utime, stime, cutime, cstime (fields 14-17)
			for _, v := range f[11:15] {
				n, _ := strconv.ParseInt(v, 10, 64)
				ticks += n
			}
		case f[1] == postmaster: // ppid (field 4): utime, stime
			for _, v := range f[11:13] {
				n, _ := strconv.ParseInt(v, 10, 64)
				ticks += n
			}
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// selfCPU is the CPU time this process (the benchmark, with the Skein code it runs) has used.
func selfCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuUse is the CPU time used between cpuShares and its stop: of this process ("this process")
// and of each named cluster, over wall.
type cpuUse struct {
	used map[string]time.Duration
	wall time.Duration
}

// cpuShares measures CPU time from now until the returned function is called: of this process and
// of the named clusters.
func cpuShares(b *testing.B, clusters map[string]*testharness.Postgres) func() cpuUse {
	b.Helper()
	start := map[string]time.Duration{"this process": selfCPU(b)}
	for n, pg := range clusters {
		start[n] = clusterCPU(b, pg)
	}
	t0 := time.Now()
	return func() cpuUse {
		u := cpuUse{used: map[string]time.Duration{"this process": selfCPU(b) - start["this process"]}, wall: time.Since(t0)}
		for n, pg := range clusters {
			u.used[n] = clusterCPU(b, pg) - start[n]
		}
		return u
	}
}

// total is the CPU time of every part.
func (u cpuUse) total() time.Duration {
	var t time.Duration
	for _, d := range u.used {
		t += d
	}
	return t
}

// String prints the CPU time, the cores it amounts to, and each part's time and share.
func (u cpuUse) String() string {
	total := u.total()
	names := slices.Sorted(maps.Keys(u.used))
	var parts []string
	for _, n := range names {
		parts = append(parts, n+" "+u.used[n].Round(10*time.Millisecond).String()+" ("+strconv.Itoa(int(100*u.used[n]/max(total, 1)))+"%)")
	}
	return "CPU in " + u.wall.Round(10*time.Millisecond).String() + " (" + strconv.FormatFloat(total.Seconds()/u.wall.Seconds(), 'f', 2, 64) + " cores): " + strings.Join(parts, ", ")
}

// perChange is a part's CPU time per change, in microseconds.
func (u cpuUse) perChange(part string, changes float64) float64 {
	return float64(u.used[part].Microseconds()) / changes
}

// rssSampler measures this process's peak resident memory from now until the returned function
// is called, which returns it in MiB.
func rssSampler(b *testing.B) func() float64 {
	b.Helper()
	require.NoError(b, testharness.ResetPeakRSS())
	return func() float64 {
		peak, err := testharness.PeakRSS(0)
		require.NoError(b, err)
		return float64(peak) / (1 << 20)
	}
}
