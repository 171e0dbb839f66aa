package cdc

import (
	"bytes"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
)

func TestAppendCopyRow(t *testing.T) {
	var buf bytes.Buffer
	appendCopyRow(&buf, &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
		{DataType: pglogrepl.TupleDataTypeText, Data: []byte("a\tb\nc\\d\re")},
		{DataType: pglogrepl.TupleDataTypeNull},
		{DataType: pglogrepl.TupleDataTypeText, Data: []byte(`\N`)},
		{DataType: pglogrepl.TupleDataTypeText, Data: []byte{}},
	}})
	require.Equal(t, "a\\tb\\nc\\\\d\\re\t\\N\t\\\\N\t\n", buf.String())
}
