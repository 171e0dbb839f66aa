package cdc

import (
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/bookkeeping"
)

func relation(identity uint8, keyed ...bool) *pglogrepl.RelationMessage {
	rel := &pglogrepl.RelationMessage{RelationID: 7, Namespace: "public", RelationName: "acct", ReplicaIdentity: identity}
	for i, k := range keyed {
		var flags uint8
		if k {
			flags = 1
		}
		rel.Columns = append(rel.Columns, &pglogrepl.RelationMessageColumn{Name: string(rune('a' + i)), Flags: flags})
	}
	return rel
}

func tuple(values ...string) *pglogrepl.TupleData {
	t := &pglogrepl.TupleData{}
	for _, v := range values {
		c := &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Data: []byte(v)}
		if v == "<toast>" {
			c = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeToast}
		}
		t.Columns = append(t.Columns, c)
	}
	return t
}

// TestLanePlacement checks where changes go: by key for a keyed relation (the same key always to
// the same lane, different keys over every lane), whole to one lane otherwise, and a barrier
// where the key is not in the tuple. The placement is part of what progress rows mean: the
// fixed lanes below (FNV-1a 32 of "public", a zero byte and "acct", then each key value after its
// length in 4 bytes, big-endian; computed apart from this code) must never change.
func TestLanePlacement(t *testing.T) {
	keyed := newLaneKey(relation('d', true, false))
	seen := map[int]bool{}
	for i := range 64 {
		id := string(rune('0'+i%10)) + string(rune('a'+i/10))
		l1, ok := keyed.lane(tuple(id, "x"), 4)
		require.True(t, ok)
		l2, _ := keyed.lane(tuple(id, "other value"), 4)
		require.Equal(t, l1, l2, "the lane of a row depends on its key only")
		seen[l1] = true
	}
	require.Len(t, seen, 4, "keys spread over every lane")

	for _, tc := range []struct {
		name  string
		rel   *pglogrepl.RelationMessage
		tuple *pglogrepl.TupleData
		lanes int
		want  int
		ok    bool
	}{
		{"keyed, fixed", relation('d', true, false), tuple("42", "x"), 4, 3, true},
		{"keyed, fixed, 3 lanes", relation('d', true, false), tuple("42", "x"), 3, 1, true},
		{"composite key", relation('i', true, true), tuple("1", "k1"), 4, 1, true},
		{"full identity goes whole", relation('f', true, true), tuple("1", "k1"), 4, 3, true},
		{"full identity, other row", relation('f', true, true), tuple("2", "k9"), 4, 3, true},
		{"no identity goes whole", relation('n', false, false), tuple("1", "x"), 4, 3, true},
		{"key left out as TOAST", relation('d', true, false), tuple("<toast>", "x"), 4, 0, false},
		{"no tuple", relation('d', true, false), nil, 4, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := newLaneKey(tc.rel).lane(tc.tuple, tc.lanes)
			require.Equal(t, tc.ok, ok)
			if ok {
				require.Equal(t, tc.want, got)
			}
		})
	}
}

// TestReplayWindow checks that a change is skipped exactly when a lane row of its own lane, under
// that row's lane count, covers its transaction.
func TestReplayWindow(t *testing.T) {
	rel := relation('d', true, false)
	k := newLaneKey(rel)
	row := tuple("42", "x")
	l4, _ := k.lane(row, 4)
	l2, _ := k.lane(row, 2)
	w := newReplayWindow([]bookkeeping.LaneRow{
		{Lane: l4, Lanes: 4, LSN: 100},
		{Lane: (l4 + 1) % 4, Lanes: 4, LSN: 300},
		{Lane: l2, Lanes: 2, LSN: 200},
	})
	require.Equal(t, pglogrepl.LSN(300), w.end)
	for _, tc := range []struct {
		lsn  pglogrepl.LSN
		want bool
	}{{50, true}, {100, true}, {150, true}, {200, true}, {250, false}, {300, false}, {400, false}} {
		require.Equal(t, tc.want, w.applied(rel, row, tc.lsn), "transaction at %s", tc.lsn)
	}
	require.False(t, (*replayWindow)(nil).applied(rel, row, 1))
	require.Nil(t, newReplayWindow(nil))
}
