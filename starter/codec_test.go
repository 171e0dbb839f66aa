package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/skein-dts/skein/pkg/temporalx"
)

// TestCodecServer: the codec protocol decodes sealed payloads for a caller with the token, from
// the UI's origin; a caller without it gets nothing.
func TestCodecServer(t *testing.T) {
	enc, err := temporalx.NewEncryptionCodec("k1", map[string][]byte{"k1": []byte(strings.Repeat("k", 32))})
	require.NoError(t, err)
	codecs := temporalx.Codecs(enc)
	srv := httptest.NewServer(codecHandler(codecs, "http://ui.example", "t0ken"))
	defer srv.Close()
	sealed, err := temporalx.DataConverterWith(enc).ToPayload("db.internal.example")
	require.NoError(t, err)
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{Endpoint: srv.URL,
		ModifyRequest: func(r *http.Request) error { r.Header.Set("Authorization", "Bearer t0ken"); return nil }})
	plain, err := remote.Decode([]*commonpb.Payload{sealed})
	require.NoError(t, err)
	var back string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(plain[0], &back))
	require.Equal(t, "db.internal.example", back)

	anonymous := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{Endpoint: srv.URL})
	_, err = anonymous.Decode([]*commonpb.Payload{sealed})
	require.ErrorContains(t, err, "Unauthorized")

	req, err := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "http://ui.example", resp.Header.Get("Access-Control-Allow-Origin"))
}
