package source

import (
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
)

func TestSwitchPoints(t *testing.T) {
	got, err := switchPoints([]byte("1\t0/3000060\tno recovery target specified\n\n2\t0/5A000D8\tno recovery target specified\n"))
	require.NoError(t, err)
	require.Equal(t, map[int32]pglogrepl.LSN{1: 0x3000060, 2: 0x5A000D8}, got)
	_, err = switchPoints([]byte("x 0/1\n"))
	require.Error(t, err)
}

// TestTimelineVerdict: a failover or restore loses nothing only when the new history left the
// recorded timeline at or after what the destination applied.
func TestTimelineVerdict(t *testing.T) {
	history := map[int32]pglogrepl.LSN{1: 0x3000060, 2: 0x5000000}
	cases := []struct {
		name              string
		applied           pglogrepl.LSN
		recorded, current int32
		inErr             string // "" = the stream goes on
	}{
		{"same timeline", 0x9000000, 1, 1, ""},
		{"no timeline recorded (older progress row)", 0x9000000, 0, 3, ""},
		{"failed over after everything applied", 0x3000060, 1, 3, ""},
		{"failed over twice, applied before both", 0x2000000, 1, 3, ""},
		{"applied on timeline 2 before its end", 0x4000000, 2, 3, ""},
		{"changes applied that the new server never had", 0x3000061, 1, 3, "left timeline 1 at 0/3000060, but the destination had applied changes up to 0/3000061"},
		{"back on an older timeline", 0x1000, 3, 2, "is on timeline 2 but the destination applied changes read on timeline 3"},
		{"a timeline not in the history", 0x1000, 4, 5, "has no timeline 4 in its history"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := timelineVerdict(tc.applied, tc.recorded, tc.current, history)
			if tc.inErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.inErr)
			require.ErrorContains(t, err, "release the task and start it again")
		})
	}
}
