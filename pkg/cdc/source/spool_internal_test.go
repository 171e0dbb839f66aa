package source

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSpoolAbortKeepsRelationDescriptions: a rolled-back subtransaction's changes leave the spool,
// but the relation descriptions sent in it stay (the source does not send them again).
func TestSpoolAbortKeepsRelationDescriptions(t *testing.T) {
	sp, err := newSpool(t.TempDir(), 10)
	require.NoError(t, err)
	defer sp.close()
	for _, m := range []struct {
		xid uint32
		msg string
	}{{10, "I top 1"}, {11, "R sub"}, {11, "U sub"}, {12, "R subsub"}, {12, "I subsub"}, {13, "I other sub"}} {
		require.NoError(t, sp.add(m.xid, []byte(m.msg)))
	}
	require.NoError(t, sp.abortSub(13))
	require.NoError(t, sp.abortSub(11))
	require.NoError(t, sp.add(10, []byte("I top 2")))
	require.NoError(t, sp.abortSub(12), "12's messages went with 11's abort: nothing left to drop")
	var got []string
	require.NoError(t, sp.replay(func(msg []byte) error { got = append(got, string(msg)); return nil }))
	require.Equal(t, []string{"I top 1", "R sub", "R subsub", "I top 2"}, got)
}
