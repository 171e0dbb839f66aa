package fullload

import (
	"strings"
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

// TestPlanAllBoundsChunks: a database that would need more than MaxChunks chunks of chunk_mb gets
// larger chunks instead, so the load's history stays bounded; a small one keeps chunk_mb.
func TestPlanAllBoundsChunks(t *testing.T) {
	tm := spec.TableMap{Source: spec.QName{Schema: "s", Name: "big"}, Dest: spec.QName{Schema: "s", Name: "big"}}
	small := spec.TableMap{Source: spec.QName{Schema: "s", Name: "small"}, Dest: spec.QName{Schema: "s", Name: "small"}}
	const gb = 1 << 30 / 8192 // blocks per GB
	tests := []struct {
		name       string
		blocks     int64
		wantChunks int
	}{
		{"64 GB in 64 MB chunks: 1024", 64 * gb, 1024},
		{"1 TB would be 16384 chunks: at most MaxChunks", 1024 * gb, 1821},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defs := []*catalog.Table{{Name: tm.Source, Blocks: tt.blocks, BlockSize: 8192}, {Name: small.Source, Blocks: 1, BlockSize: 8192}}
			plans := PlanAll(defs, []spec.TableMap{tm, small}, 64, 150000)
			require.Len(t, plans[0], tt.wantChunks)
			require.Len(t, plans[1], 1)
			require.LessOrEqual(t, len(plans[0])+len(plans[1]), MaxChunks)
		})
	}
}

// TestChunkIDsAreUnambiguous: tables whose dotted names read alike ("s"."a.b" and "s.a"."b"), or
// whose name looks like another's chunk id (t#1), never share a chunk id or a reset prefix.
func TestChunkIDsAreUnambiguous(t *testing.T) {
	names := []spec.QName{{Schema: "s", Name: "a.b"}, {Schema: "s.a", Name: "b"}, {Schema: "s", Name: "t"}, {Schema: "s", Name: "t#1"}, {Schema: "s", Name: "t#"}}
	ids := map[string]spec.QName{}
	for _, q := range names {
		tm := spec.TableMap{Source: q, Dest: q}
		for _, c := range Plan(&catalog.Table{Name: q, Blocks: 300, BlockSize: 8192}, tm, 1, 150000) {
			prev, dup := ids[c.ID]
			require.False(t, dup, "%s and %s share chunk id %s", prev, q, c.ID)
			ids[c.ID] = q
		}
	}
	for id, owner := range ids {
		for _, q := range names {
			if q != owner {
				require.False(t, strings.HasPrefix(id, TableKey(q)+"#"), "chunk %s of %s matches the reset prefix of %s", id, owner, q)
			}
		}
	}
}
