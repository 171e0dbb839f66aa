package fullload

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/spec"
)

func TestPlan(t *testing.T) {
	tm := spec.TableMap{Source: spec.QName{Schema: "s", Name: "t"}, Dest: spec.QName{Schema: "s", Name: "t"}}
	tests := []struct {
		name     string
		blocks   int64
		chunkMB  int
		version  int
		want     [][2]int64 // first, end block of each chunk
		wantRows []int64
	}{
		{"small table: one chunk, no ctid filter", 100, 64, 150000, [][2]int64{{0, 0}}, []int64{1000}},
		{"empty table", 0, 64, 150000, [][2]int64{{0, 0}}, []int64{1000}},
		{"split in block ranges, the last one open-ended", 300, 1, 150000, [][2]int64{{0, 128}, {128, 256}, {256, 0}}, []int64{333, 333, 333}},
		{"exact multiple", 256, 1, 150000, [][2]int64{{0, 128}, {128, 0}}, []int64{500, 500}},
		{"PostgreSQL 13 has no TID range scan: one chunk", 300, 1, 130000, [][2]int64{{0, 0}}, []int64{1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := &catalog.Table{Name: tm.Source, Blocks: tt.blocks, BlockSize: 8192, RowsEstimate: 1000}
			chunks := Plan(tbl, tm, tt.chunkMB, tt.version)
			require.Len(t, chunks, len(tt.want))
			for i, c := range chunks {
				require.Equal(t, tt.want[i], [2]int64{c.FirstBlock, c.EndBlock}, "chunk %d", i)
				require.Equal(t, tt.wantRows[i], c.RowsEstimate)
				require.Equal(t, tm, c.Table)
			}
			ids := map[string]bool{}
			for _, c := range chunks {
				require.False(t, ids[c.ID], "chunk ids are unique")
				ids[c.ID] = true
			}
		})
	}
}

func TestCtidFilter(t *testing.T) {
	require.Equal(t, "", ctidFilter(Chunk{}))
	require.Equal(t, ` WHERE ctid >= '(128,0)'::pg_catalog.tid`, ctidFilter(Chunk{FirstBlock: 128}))
	require.Equal(t, ` WHERE ctid >= '(0,0)'::pg_catalog.tid AND ctid < '(128,0)'::pg_catalog.tid`, ctidFilter(Chunk{EndBlock: 128}))
}
