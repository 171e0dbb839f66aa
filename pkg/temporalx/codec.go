package temporalx

import (
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// CompressAbove is the payload size from which payloads are stored compressed.
const CompressAbove = 64 << 10

// DataConverter is the data converter of every Skein client (worker, CLI, tests): JSON as the
// SDK's default, with payloads above CompressAbove compressed (zlib). A task over thousands of
// tables has table lists, load plans and status answers of megabytes that compress about tenfold,
// which keeps them under Temporal's payload limit (2 MB) and its history far from its size limit;
// payloads of ordinary tasks stay plain JSON, readable in the Temporal UI and CLI. With payload
// encryption configured (Encryption), every payload is then sealed; call Encryption first to see
// a configuration error.
func DataConverter() converter.DataConverter {
	enc, _ := Encryption()
	return DataConverterWith(enc)
}

// DataConverterWith is DataConverter with the encryption codec enc (nil: none).
func DataConverterWith(enc *EncryptionCodec) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), Codecs(enc)...)
}

// Codecs are the payload codecs of DataConverterWith, for a codec server: compression, then
// encryption (encrypted data does not compress).
func Codecs(enc *EncryptionCodec) []converter.PayloadCodec {
	if enc == nil {
		return []converter.PayloadCodec{largePayloadCodec{}}
	}
	return []converter.PayloadCodec{enc, largePayloadCodec{}}
}

// largePayloadCodec compresses payloads above CompressAbove and decodes compressed ones.
type largePayloadCodec struct{}

var zlibCodec = converter.NewZlibCodec(converter.ZlibCodecOptions{})

// Encode compresses each large payload when that makes it smaller.
func (largePayloadCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		out[i] = p
		if len(p.GetData()) <= CompressAbove {
			continue
		}
		enc, err := zlibCodec.Encode([]*commonpb.Payload{p})
		if err != nil {
			return payloads, err
		}
		out[i] = enc[0]
	}
	return out, nil
}

// Decode decompresses compressed payloads and leaves the others as they are.
func (largePayloadCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return zlibCodec.Decode(payloads)
}
