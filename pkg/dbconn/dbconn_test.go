package dbconn_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/secrets"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestTLSModes connects to a server with TLS in every mode, with libpq's meaning of each.
func TestTLSModes(t *testing.T) {
	ca := testharness.NewCA(t, "skein test CA")
	other := testharness.NewCA(t, "some other CA")
	server := testharness.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "db"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca)
	client := testharness.ClientCert(t, ca, "skein-client")
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{
		Settings: []string{"ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'", "ssl_ca_file = 'ca.crt'"},
		Files:    map[string][]byte{"server.crt": server.PEM, "server.key": server.KeyPEM, "ca.crt": ca.PEM},
	})
	dir := t.TempDir()
	for name, content := range map[string][]byte{"ca": ca.PEM, "other-ca": other.PEM, "client-cert": client.PEM, "client-key": client.KeyPEM, "garbage": []byte("not pem"),
		"key-pw": []byte("s3cret pass\n"), "wrong-pw": []byte("nope")} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), content, 0o600))
	}
	// Encrypted copies of the client key, as openssl writes them: PKCS#8 with PBES2 (AES-256-CBC,
	// PBKDF2 with HMAC-SHA256; and AES-128 with HMAC-SHA1), and the legacy PEM encryption.
	encrypted := map[string][]string{
		"client-key-pkcs8":      {"pkcs8", "-topk8", "-v2", "aes-256-cbc"},
		"client-key-pkcs8-sha1": {"pkcs8", "-topk8", "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"},
		"client-key-legacy":     {"ec", "-aes256"},
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is needed to write encrypted keys: %v", err)
	}
	for name, args := range encrypted {
		args = append(args, "-in", filepath.Join(dir, "client-key"), "-out", filepath.Join(dir, name), "-passout", "pass:s3cret pass")
		out, err := exec.Command("openssl", args...).CombinedOutput()
		require.NoError(t, err, string(out))
	}
	legacy, err := os.ReadFile(filepath.Join(dir, "client-key-legacy"))
	require.NoError(t, err)
	require.Contains(t, string(legacy), "Proc-Type: 4,ENCRYPTED", "the legacy format")
	open := dbconn.Opener{Secrets: secrets.Resolver{Dir: dir, Getenv: func(string) string { return "" }}, ConnectTimeout: 5 * time.Second}

	tests := []struct {
		name      string
		host      string
		tls       spec.TLS
		wantSSL   bool
		clientDN  string
		wantError string
	}{
		{name: "disable", tls: spec.TLS{Mode: "disable"}},
		{name: "require encrypts without checking", tls: spec.TLS{Mode: "require"}, wantSSL: true},
		{name: "require with a CA checks the chain", tls: spec.TLS{Mode: "require", CASecret: "other-ca"}, wantError: "certificate"},
		{name: "verify-ca", host: "localhost", tls: spec.TLS{Mode: "verify-ca", CASecret: "ca"}, wantSSL: true},
		{name: "verify-ca with the wrong CA", tls: spec.TLS{Mode: "verify-ca", CASecret: "other-ca"}, wantError: "certificate"},
		{name: "verify-full", tls: spec.TLS{Mode: "verify-full", CASecret: "ca"}, wantSSL: true},
		{name: "verify-full checks the host name", host: "localhost", tls: spec.TLS{Mode: "verify-full", CASecret: "ca"}, wantError: "localhost"},
		{name: "client certificate", tls: spec.TLS{Mode: "verify-full", CASecret: "ca", CertSecret: "client-cert", KeySecret: "client-key"},
			wantSSL: true, clientDN: "CN=skein-client"},
		{name: "client certificate with an encrypted PKCS#8 key", tls: spec.TLS{Mode: "verify-full", CASecret: "ca", CertSecret: "client-cert", KeySecret: "client-key-pkcs8", KeyPasswordSecret: "key-pw"},
			wantSSL: true, clientDN: "CN=skein-client"},
		{name: "client certificate with an encrypted PKCS#8 key (SHA-1, AES-128)", tls: spec.TLS{Mode: "verify-full", CASecret: "ca", CertSecret: "client-cert", KeySecret: "client-key-pkcs8-sha1", KeyPasswordSecret: "key-pw"},
			wantSSL: true, clientDN: "CN=skein-client"},
		{name: "client certificate with a legacy encrypted key", tls: spec.TLS{Mode: "verify-full", CASecret: "ca", CertSecret: "client-cert", KeySecret: "client-key-legacy", KeyPasswordSecret: "key-pw"},
			wantSSL: true, clientDN: "CN=skein-client"},
		{name: "an encrypted key with the wrong password", tls: spec.TLS{Mode: "verify-full", CASecret: "ca", CertSecret: "client-cert", KeySecret: "client-key-pkcs8", KeyPasswordSecret: "wrong-pw"},
			wantError: `secrets "client-key-pkcs8" and "wrong-pw" (tls.key_secret, tls.key_password_secret)`},
		{name: "an encrypted key without its password", tls: spec.TLS{Mode: "verify-full", CASecret: "ca", CertSecret: "client-cert", KeySecret: "client-key-pkcs8"},
			wantError: "client-key-pkcs8"},
		{name: "a CA secret without a certificate", tls: spec.TLS{Mode: "verify-ca", CASecret: "garbage"}, wantError: `secret "garbage" (tls.ca_secret): no PEM certificate`},
		{name: "a missing secret", tls: spec.TLS{Mode: "verify-ca", CASecret: "nope"}, wantError: `secret "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			ep := pg.Endpoint("postgres")
			if tt.host != "" {
				ep.Host = tt.host
			}
			ep.TLS = tt.tls
			conn, err := open.Connect(ctx, ep)
			if tt.wantError != "" {
				require.ErrorContains(t, err, tt.wantError)
				return
			}
			require.NoError(t, err)
			defer conn.Close(ctx)
			var ssl bool
			var dn *string
			require.NoError(t, conn.QueryRow(ctx, `SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &dn))
			require.Equal(t, tt.wantSSL, ssl)
			if tt.clientDN != "" {
				require.NotNil(t, dn)
				require.Contains(t, *dn, tt.clientDN)
			}
			// A replication connection takes the same settings.
			repl, err := open.ConnectReplication(ctx, ep)
			require.NoError(t, err)
			repl.Close(ctx)
		})
	}
}

// TestSessionsPinTextFormats: a server whose defaults change the text form of values (DMY dates,
// SQL-standard intervals, rounded floats, escaped bytea) still gives every Skein session the
// same formats, on a regular connection to the source and to the destination alike.
func TestSessionsPinTextFormats(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a PostgreSQL server")
	}
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{Settings: []string{
		"DateStyle = 'SQL, DMY'", "IntervalStyle = 'sql_standard'", "extra_float_digits = 0", "bytea_output = 'escape'",
		"synchronous_commit = off",
	}})
	open := dbconn.Opener{}
	src, err := open.Connect(ctx, pg.Endpoint("postgres"))
	require.NoError(t, err)
	defer src.Close(ctx)
	dst, err := open.ConnectDestination(ctx, pg.Endpoint("postgres"))
	require.NoError(t, err)
	defer dst.Close(ctx)
	for name, conn := range map[string]interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}{"source": src, "destination": dst} {
		var date, interval, float, bytea string
		require.NoError(t, conn.QueryRow(ctx, `SELECT DATE '2024-02-03'::text, INTERVAL '1 day 02:03:04'::text, (0.1::float8 + 0.2)::text, '\x01ff'::bytea::text`).
			Scan(&date, &interval, &float, &bytea))
		require.Equal(t, "2024-02-03", date, name)
		require.Equal(t, "1 day 02:03:04", interval, name)
		require.Equal(t, "0.30000000000000004", float, name)
		require.Equal(t, `\x01ff`, bytea, name)
	}
	var path, syncCommit string
	require.NoError(t, dst.QueryRow(ctx, `SHOW search_path`).Scan(&path))
	require.Equal(t, "pg_catalog", path, "destination sessions search pg_catalog alone")
	require.NoError(t, dst.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&syncCommit))
	require.Equal(t, "on", syncCommit, "destination commits are durable before the slot moves past them")
}

// TestPasswordsGoOnlyWhereAllowed: without TLS, a server that asks for the password in
// cleartext gets none (SCRAM still works); a secret bound to hosts is not sent to another one,
// and the error names both.
func TestPasswordsGoOnlyWhereAllowed(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a PostgreSQL server")
	}
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{Files: map[string][]byte{"pg_hba.conf": []byte(
		"local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all clear 127.0.0.1/32 password\nhost all scram 127.0.0.1/32 scram-sha-256\n")}})
	admin, err := pg.Connect(ctx, "postgres")
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, `SET password_encryption = 'scram-sha-256'; CREATE ROLE clear LOGIN PASSWORD 'pw-clear'; CREATE ROLE scram LOGIN PASSWORD 'pw-scram'`)
	require.NoError(t, err)
	dir := t.TempDir()
	for name, content := range map[string]string{"clear-pw": "pw-clear", "scram-pw": "pw-scram", "bound-pw": "pw-scram", "bound-pw.hosts": "db.example.com\n127.0.0.1:1\n"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	open := dbconn.Opener{Secrets: secrets.Resolver{Dir: dir, Getenv: func(string) string { return "" }}}
	endpoint := func(user, secret string) spec.Endpoint {
		ep := pg.Endpoint("postgres")
		ep.User, ep.PasswordSecret = user, secret
		return ep
	}

	conn, err := open.Connect(ctx, endpoint("scram", "scram-pw"))
	require.NoError(t, err, "SCRAM sends no password: allowed without TLS")
	conn.Close(ctx)

	_, err = open.Connect(ctx, endpoint("clear", "clear-pw"))
	require.Error(t, err, "a cleartext password request without TLS is refused")
	require.ErrorContains(t, err, "password")

	_, err = open.Connect(ctx, endpoint("scram", "bound-pw"))
	require.ErrorIs(t, err, secrets.ErrNotAllowed)
	require.ErrorContains(t, err, "db.example.com, 127.0.0.1:1")
	require.ErrorContains(t, err, fmt.Sprintf("not to 127.0.0.1:%d", pg.Port))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bound-pw.hosts"), []byte(fmt.Sprintf("127.0.0.1:%d", pg.Port)), 0o600))
	conn, err = open.Connect(ctx, endpoint("scram", "bound-pw"))
	require.NoError(t, err, "the bound host gets it")
	conn.Close(ctx)
}

// TestConnectionBudget: connections beyond the budget wait for one to close; one that waits past
// the connect timeout fails naming the budget; every kind of connection counts, and a failed
// connect gives its place back.
func TestConnectionBudget(t *testing.T) {
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{Logical: true})
	budget := dbconn.NewBudget(2)
	open := dbconn.Opener{Budget: budget, ConnectTimeout: time.Second}
	ep := pg.Endpoint("postgres")

	a, err := open.Connect(ctx, ep)
	require.NoError(t, err)
	repl, err := open.ConnectReplication(ctx, ep)
	require.NoError(t, err)
	require.Equal(t, 2, budget.InUse())
	require.Zero(t, budget.Spare())

	_, err = open.ConnectDestination(ctx, ep)
	require.ErrorContains(t, err, "all 2 connections of this worker's budget stay in use")
	require.ErrorContains(t, err, "SKEIN_MAX_CONNECTIONS")

	// A connection waiting for a place gets the one a closing connection gives back.
	got := make(chan error, 1)
	go func() {
		c, err := open.Connect(ctx, ep)
		if err == nil {
			c.Close(ctx)
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, a.Close(ctx))
	require.NoError(t, <-got)
	require.NoError(t, repl.Close(ctx))
	require.Zero(t, budget.InUse())

	bad := ep
	bad.Database = "no_such_db"
	_, err = open.Connect(ctx, bad)
	require.Error(t, err)
	require.Zero(t, budget.InUse(), "a refused connection gives its place back")
	require.Equal(t, math.MaxInt, (*dbconn.Budget)(nil).Spare(), "no budget, no cap")
}
