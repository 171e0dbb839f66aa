package throttle

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

func TestSharedLimiterFollowsItsShare(t *testing.T) {
	l := Shared(8000, 4, 4)
	for _, tc := range []struct {
		share       int
		rows, bytes rate.Limit
	}{
		{0, 8000, 4 << 20}, // not known: all of it, as one worker
		{1, 8000, 4 << 20},
		{2, 4000, 2 << 20},
		{4, 2000, 1 << 20},
	} {
		l.SetShare(tc.share)
		require.Equal(t, tc.rows, l.rows.Limit(), "share %d", tc.share)
		require.Equal(t, tc.bytes, l.bytes.Limit(), "share %d", tc.share)
	}
	require.Nil(t, Shared(0, 0, 3), "no limits: no limiter")
	var none *Limiter
	none.SetShare(2) // a nil limiter ignores it
}

func TestSharedLimiterStartsWithItsPart(t *testing.T) {
	l := Shared(8000, 0, 4)
	require.Equal(t, rate.Limit(2000), l.rows.Limit())
	require.Nil(t, l.bytes)
}
