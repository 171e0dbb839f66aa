package secrets

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "src-db"), []byte("s3cret\n"), 0o600))
	env := map[string]string{"SKEIN_SECRET_DST_DB": "from-env", "PGPASSWORD": "never"}
	r := Resolver{Dir: dir, Getenv: func(k string) string { return env[k] }}

	tests := []struct {
		name, secret, want, errIn string
	}{
		{"file, trailing newline trimmed", "src-db", "s3cret", ""},
		{"environment, upper-cased with - as _", "dst-db", "from-env", ""},
		{"missing names both places", "other", "", "SKEIN_SECRET_OTHER"},
		{"no path traversal", "../src-db", "", "not a valid secret name"},
		{"no other environment variable", "PGPASSWORD", "", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(tt.secret)
			if tt.errIn != "" {
				require.ErrorContains(t, err, tt.errIn)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestErrorsNeverHoldContent(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "is-a-dir"), 0o700))
	r := Resolver{Dir: dir, Getenv: func(string) string { return "" }}
	_, err := r.Resolve("is-a-dir")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}
