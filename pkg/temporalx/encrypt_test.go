package temporalx

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"

	"github.com/skein-dts/skein/pkg/secrets"
)

func testKeys(t *testing.T) (dir string, env map[string]string) {
	t.Helper()
	dir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key-2026"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key-2025"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600))
	return dir, map[string]string{"SKEIN_SECRETS_DIR": dir}
}

// TestEncryptionSealsAndRotates: sealed payloads hold nothing readable and name their key;
// the converter reads them back, also large (compressed, then sealed) ones; after a rotation the
// old key still opens what it sealed; a process without the key says which one it lacks.
func TestEncryptionSealsAndRotates(t *testing.T) {
	dir, env := testKeys(t)
	getenv := func(k string) string { return env[k] }
	r := secrets.Resolver{Dir: dir}

	env["SKEIN_PAYLOAD_KEY"] = "key-2025"
	old, err := EncryptionFrom(r, getenv)
	require.NoError(t, err)
	sealedOld, err := DataConverterWith(old).ToPayload(map[string]string{"host": "db.internal.example", "user": "repl"})
	require.NoError(t, err)

	env["SKEIN_PAYLOAD_KEY"], env["SKEIN_PAYLOAD_OLD_KEYS"] = "key-2026", "key-2025"
	enc, err := EncryptionFrom(r, getenv)
	require.NoError(t, err)
	dc := DataConverterWith(enc)
	for _, value := range []string{"db.internal.example", strings.Repeat("db.internal.example ", 10000)} {
		p, err := dc.ToPayload(value)
		require.NoError(t, err)
		require.Equal(t, EncodingEncrypted, string(p.GetMetadata()[converter.MetadataEncoding]))
		require.Equal(t, "key-2026", string(p.GetMetadata()[MetadataKeyID]))
		require.False(t, bytes.Contains(p.GetData(), []byte("db.internal")), "sealed")
		var back string
		require.NoError(t, dc.FromPayload(p, &back))
		require.Equal(t, value, back)
	}
	var back map[string]string
	require.NoError(t, dc.FromPayload(sealedOld, &back), "the old key opens what it sealed")
	require.Equal(t, "repl", back["user"])

	delete(env, "SKEIN_PAYLOAD_OLD_KEYS")
	withoutOld, err := EncryptionFrom(r, getenv)
	require.NoError(t, err)
	require.ErrorContains(t, DataConverterWith(withoutOld).FromPayload(sealedOld, &back), `key "key-2025"`)

	env["SKEIN_PAYLOAD_KEY"] = "nope"
	_, err = EncryptionFrom(r, getenv)
	require.ErrorContains(t, err, `"nope"`)
	delete(env, "SKEIN_PAYLOAD_KEY")
	none, err := EncryptionFrom(r, getenv)
	require.NoError(t, err)
	require.Nil(t, none, "no key: no encryption")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "short"), []byte("abcd"), 0o600))
	env["SKEIN_PAYLOAD_KEY"] = "short"
	_, err = EncryptionFrom(r, getenv)
	require.ErrorContains(t, err, "32 bytes")
}
