package source

import (
	"encoding/binary"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// rowDecoder decodes pgoutput's insert, update and delete messages, the bulk of a stream, into
// structures it reuses, with values that point into the message instead of copies of them: they
// are valid until the next message is received. pglogrepl allocates every column of every row,
// which cost a sixth of the apply's CPU time. The applier copies what it keeps (COPY rows, array
// literals, pipelined parameters, key texts). Other messages go through pglogrepl.
type rowDecoder struct {
	insert pglogrepl.InsertMessage
	update pglogrepl.UpdateMessage
	delete pglogrepl.DeleteMessage
	tuples [2]tupleBuf
}

// tupleBuf is a reused tuple and its columns.
type tupleBuf struct {
	tuple pglogrepl.TupleData
	cols  []pglogrepl.TupleDataColumn
	ptrs  []*pglogrepl.TupleDataColumn
}

// isRowMessage reports whether msg (a pgoutput message, type byte first) is an insert, update
// or delete.
func isRowMessage(msg []byte) bool {
	return len(msg) > 0 && (msg[0] == 'I' || msg[0] == 'U' || msg[0] == 'D')
}

// decode decodes an insert, update or delete message; body is the message after its type byte
// (and, in a streamed transaction, after its transaction id).
func (d *rowDecoder) decode(kind byte, body []byte) (pglogrepl.Message, error) {
	if len(body) < 5 {
		return nil, fmt.Errorf("%c message of %d bytes", kind, len(body))
	}
	rel := binary.BigEndian.Uint32(body)
	body = body[4:]
	switch kind {
	case 'I':
		if body[0] != 'N' {
			return nil, fmt.Errorf("insert message: tuple type %q", body[0])
		}
		t, _, err := d.tuples[0].decode(body[1:])
		d.insert.RelationID, d.insert.Tuple = rel, t
		return &d.insert, err
	case 'U':
		d.update.RelationID, d.update.OldTuple, d.update.OldTupleType = rel, nil, 0
		if body[0] == 'K' || body[0] == 'O' {
			old, n, err := d.tuples[1].decode(body[1:])
			if err != nil {
				return nil, err
			}
			d.update.OldTuple, d.update.OldTupleType = old, body[0]
			body = body[1+n:]
		}
		if len(body) == 0 || body[0] != 'N' {
			return nil, fmt.Errorf("update message: no new tuple")
		}
		t, _, err := d.tuples[0].decode(body[1:])
		d.update.NewTuple = t
		return &d.update, err
	default:
		if body[0] != 'K' && body[0] != 'O' {
			return nil, fmt.Errorf("delete message: tuple type %q", body[0])
		}
		old, _, err := d.tuples[1].decode(body[1:])
		d.delete.RelationID, d.delete.OldTupleType, d.delete.OldTuple = rel, body[0], old
		return &d.delete, err
	}
}

// decode reads one TupleData from src and returns it and the bytes it used.
func (b *tupleBuf) decode(src []byte) (*pglogrepl.TupleData, int, error) {
	if len(src) < 2 {
		return nil, 0, fmt.Errorf("tuple data: %d bytes", len(src))
	}
	n := int(binary.BigEndian.Uint16(src))
	if cap(b.cols) < n {
		b.cols = make([]pglogrepl.TupleDataColumn, n)
		b.ptrs = make([]*pglogrepl.TupleDataColumn, n)
	}
	b.cols, b.ptrs = b.cols[:n], b.ptrs[:n]
	at := 2
	for i := range b.cols {
		if at >= len(src) {
			return nil, 0, fmt.Errorf("tuple data: column %d of %d missing", i+1, n)
		}
		c := &b.cols[i]
		*c = pglogrepl.TupleDataColumn{DataType: src[at]}
		at++
		if c.DataType == pglogrepl.TupleDataTypeText || c.DataType == pglogrepl.TupleDataTypeBinary {
			if at+4 > len(src) {
				return nil, 0, fmt.Errorf("tuple data: column %d of %d cut short", i+1, n)
			}
			c.Length = binary.BigEndian.Uint32(src[at:])
			at += 4
			if uint64(at)+uint64(c.Length) > uint64(len(src)) {
				return nil, 0, fmt.Errorf("tuple data: column %d of %d cut short", i+1, n)
			}
			c.Data = src[at : at+int(c.Length) : at+int(c.Length)]
			at += int(c.Length)
		}
		b.ptrs[i] = c
	}
	b.tuple.ColumnNum, b.tuple.Columns = uint16(n), b.ptrs
	return &b.tuple, at, nil
}
