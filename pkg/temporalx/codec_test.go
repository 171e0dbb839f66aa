package temporalx

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
)

func TestDataConverterCompressesOnlyLargePayloads(t *testing.T) {
	dc := DataConverter()
	for _, tc := range []struct {
		name       string
		value      string
		compressed bool
	}{
		{"small stays plain JSON", "a table list of a few tables", false},
		{"large is compressed", strings.Repeat(`{"source":{"schema":"s","name":"t"}},`, 10000), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := dc.ToPayload(tc.value)
			require.NoError(t, err)
			if tc.compressed {
				require.Equal(t, "binary/zlib", string(p.GetMetadata()[converter.MetadataEncoding]))
				require.Less(t, len(p.GetData()), len(tc.value)/10)
			} else {
				require.Equal(t, converter.MetadataEncodingJSON, string(p.GetMetadata()[converter.MetadataEncoding]))
			}
			var back string
			require.NoError(t, dc.FromPayload(p, &back))
			require.Equal(t, tc.value, back)
			// The SDK's default converter (the Temporal CLI's) reads the small ones as they are.
			if !tc.compressed {
				require.NoError(t, converter.GetDefaultDataConverter().FromPayload(p, &back))
				require.Equal(t, tc.value, back)
			}
		})
	}
}
