package source

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
)

// tupleBytes encodes a TupleData as pgoutput does: "n" null, "u" unchanged TOAST, else text.
func tupleBytes(vals ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		switch v {
		case "n", "u":
			b = append(b, v[0])
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

func rowMessage(kind byte, parts ...[]byte) []byte {
	msg := binary.BigEndian.AppendUint32([]byte{kind}, 16384)
	for _, p := range parts {
		msg = append(msg, p...)
	}
	return msg
}

// TestRowDecoderMatchesPglogrepl: the reusing decoder reads what pglogrepl reads, and rejects
// messages cut short instead of reading past them.
func TestRowDecoderMatchesPglogrepl(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"insert", rowMessage('I', []byte("N"), tupleBytes("1", "n", "", "tab\there"))},
		{"update", rowMessage('U', []byte("N"), tupleBytes("1", "u", "x"))},
		{"update with key", rowMessage('U', []byte("K"), tupleBytes("1", "n", "n"), []byte("N"), tupleBytes("2", "y", "n"))},
		{"update with old row", rowMessage('U', []byte("O"), tupleBytes("1", "a", "b"), []byte("N"), tupleBytes("1", "c", "b"))},
		{"delete", rowMessage('D', []byte("K"), tupleBytes("7", "n"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := pglogrepl.Parse(tc.msg)
			require.NoError(t, err)
			var d rowDecoder
			require.True(t, isRowMessage(tc.msg))
			got, err := d.decode(tc.msg[0], tc.msg[1:])
			require.NoError(t, err)
			requireSameRow(t, rowOf(want), rowOf(got))
			for cut := 1; cut < len(tc.msg)-1; cut++ {
				_, err := d.decode(tc.msg[0], tc.msg[1:len(tc.msg)-cut])
				require.Error(t, err, "cut by %d bytes", cut)
			}
		})
	}
}

// row is what an insert, update or delete message says, whichever it is.
type row struct {
	relation      uint32
	oldType       uint8
	old, newTuple *pglogrepl.TupleData
}

func rowOf(msg pglogrepl.Message) row {
	switch m := msg.(type) {
	case *pglogrepl.InsertMessage:
		return row{relation: m.RelationID, newTuple: m.Tuple}
	case *pglogrepl.UpdateMessage:
		return row{relation: m.RelationID, oldType: m.OldTupleType, old: m.OldTuple, newTuple: m.NewTuple}
	case *pglogrepl.DeleteMessage:
		return row{relation: m.RelationID, oldType: m.OldTupleType, old: m.OldTuple}
	}
	panic(fmt.Sprintf("not a row message: %T", msg))
}

func requireSameRow(t *testing.T, want, got row) {
	t.Helper()
	require.Equal(t, want.relation, got.relation)
	require.Equal(t, want.oldType, got.oldType)
	requireSameTuple(t, want.old, got.old)
	requireSameTuple(t, want.newTuple, got.newTuple)
}

func requireSameTuple(t *testing.T, want, got *pglogrepl.TupleData) {
	t.Helper()
	if want == nil {
		require.Nil(t, got)
		return
	}
	require.NotNil(t, got)
	require.Len(t, got.Columns, len(want.Columns))
	for i, w := range want.Columns {
		g := got.Columns[i]
		require.Equal(t, w.DataType, g.DataType, "column %d", i)
		require.Equal(t, string(w.Data), string(g.Data), "column %d", i)
	}
}
