package cdc

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/spec"
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

// TestSmallRunsHoldSmallValues: a run of inserts keeps each row's values for single-row INSERTs
// only while they stay small; a row of large values sends its run as a COPY, so the values are not
// held twice while it gathers.
func TestSmallRunsHoldSmallValues(t *testing.T) {
	rel := &pglogrepl.RelationMessage{RelationID: 7, Namespace: "public", RelationName: "t",
		Columns: []*pglogrepl.RelationMessageColumn{{Name: "id", Flags: 1}, {Name: "v"}}}
	tm := spec.TableMap{Source: spec.QName{Schema: "public", Name: "t"}, Dest: spec.QName{Schema: "public", Name: "t"}}
	row := func(id string, size int) *pglogrepl.InsertMessage {
		return &pglogrepl.InsertMessage{RelationID: 7, Tuple: &pglogrepl.TupleData{Columns: []*pglogrepl.TupleDataColumn{
			{DataType: pglogrepl.TupleDataTypeText, Data: []byte(id)},
			{DataType: pglogrepl.TupleDataTypeText, Data: bytes.Repeat([]byte("x"), size)},
		}}}
	}
	for _, tc := range []struct {
		name  string
		sizes []int
		small int // rows kept for single-row INSERTs; -1: none, the run goes as a COPY
	}{
		{"small rows", []int{10, 10, 10}, 3},
		{"one large value", []int{smallBytes + 1}, -1},
		{"small rows, then a large one", []int{10, 10, smallBytes}, -1},
		{"a large row, then small ones", []int{smallBytes, 10, 10}, -1},
		{"more rows than a small run", make([]int, smallRun+1), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(nil, []spec.TableMap{tm}, zap.NewNop())
			for i, size := range tc.sizes {
				require.NoError(t, a.batchInsert(context.Background(), row(fmt.Sprint(i), size), rel, tm))
			}
			run := a.runs[7]
			require.Equal(t, len(tc.sizes), run.rows)
			if tc.small < 0 {
				require.Nil(t, run.small)
				require.Zero(t, run.smallBytes)
				return
			}
			require.Len(t, run.small, tc.small)
		})
	}
}
