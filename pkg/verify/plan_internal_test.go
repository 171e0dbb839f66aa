package verify

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/catalog"
)

// TestMaxRowsIn: the bound under which a table's key ranges are not asked for is PostgreSQL's
// most rows per heap page times the table's blocks.
func TestMaxRowsIn(t *testing.T) {
	tests := []struct {
		name              string
		method            string
		blocks, blockSize int64
		want              int64
	}{
		{"empty", "heap", 0, 8192, 0},
		{"one 8 kB page (MaxHeapTuplesPerPage)", "heap", 1, 8192, 291},
		{"block size unknown: 8 kB", "heap", 3, 0, 873},
		{"32 kB pages", "heap", 2, 32768, 2 * 1169},
		{"another access method: no bound", "columnar", 1, 8192, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, maxRowsIn(&catalog.Table{AccessMethod: tt.method, Blocks: tt.blocks, BlockSize: tt.blockSize}))
		})
	}
}
