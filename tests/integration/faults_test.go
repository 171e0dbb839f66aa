package integration

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestDestinationOutOfDiskFailsAtOnce: the destination's tablespace is a 4 MiB file system and
// the load needs more. The task does not retry into a full disk for retry.other_minutes: it fails
// at once, saying why, and waits for an operator to free space and resume it.
func TestDestinationOutOfDiskFailsAtOnce(t *testing.T) {
	parallel(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small file system")
	}
	// Not under t.TempDir(): the postgres user must reach it.
	tiny, err := os.MkdirTemp("", "skein-tiny-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(tiny, 0o755))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", tiny).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { // after the cluster stops
		_ = exec.Command("umount", "-l", tiny).Run()
		_ = os.Remove(tiny)
	})
	require.NoError(t, exec.Command("chown", "postgres:", tiny).Run())

	srcPG, dstPG, src, dst := shopPair(t, false)
	testharness.Exec(t, src, `CREATE TABLE shop.wide AS SELECT g AS id, repeat(md5(g::text), 20) AS pad FROM generate_series(1, 20000) g;
ALTER TABLE shop.wide ADD PRIMARY KEY (id)`)
	testharness.Exec(t, dst, "CREATE TABLESPACE tiny LOCATION '"+tiny+"'")
	testharness.Exec(t, dst, `ALTER DATABASE target SET default_tablespace = tiny`)

	c := startWorker(t, t.TempDir())
	no := false
	s := shopSpec("it-disk", srcPG, dstPG)
	s.Objects[0].Tables = []spec.Table{{Name: "wide"}}
	s.Sync.Incremental = &no
	start := time.Now()
	run := startTask(t, c, s, nil)
	st := waitPhase(t, c, run.GetID(), api.PhaseFailed, 2*time.Minute)
	require.Less(t, time.Since(start), 90*time.Second, "fails at once, not after the retry window")
	require.Equal(t, "fatal", st.Retry.Class, "%+v", st.Retry)
	require.Contains(t, st.LastError, "No space left on device")
	require.Equal(t, api.PhaseFullLoad, st.Step, "the step that failed")
}
