package temporalx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.temporal.io/sdk/client"
)

// Connection settings of every Skein process (worker, CLI), from the environment variables the
// Temporal CLI reads: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_CERT and
// TEMPORAL_TLS_KEY (a client certificate: mTLS), TEMPORAL_TLS_CA (the server's CA),
// TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS (TLS with the system's roots) and TEMPORAL_API_KEY
// (Temporal Cloud). Each certificate, key, CA and the API key is a file path or the value itself.

// Defaults of TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE.
const (
	defaultAddress   = "localhost:7233"
	defaultNamespace = "default"
)

// Connection is the part of client.Options the environment sets.
type Connection struct {
	HostPort    string
	Namespace   string
	TLS         *tls.Config
	Credentials client.Credentials
	// APIKey reports that an API key is set (its value stays in Credentials).
	APIKey bool
}

// ConnectionFromEnv reads the connection settings with getenv (nil: os.Getenv).
func ConnectionFromEnv(getenv func(string) string) (Connection, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Connection{HostPort: getenv("TEMPORAL_ADDRESS"), Namespace: getenv("TEMPORAL_NAMESPACE")}
	if c.HostPort == "" {
		c.HostPort = defaultAddress
	}
	if c.Namespace == "" {
		c.Namespace = defaultNamespace
	}
	certText, err := valueOrFile(getenv("TEMPORAL_TLS_CERT"), "TEMPORAL_TLS_CERT")
	if err != nil {
		return c, err
	}
	keyText, err := valueOrFile(getenv("TEMPORAL_TLS_KEY"), "TEMPORAL_TLS_KEY")
	if err != nil {
		return c, err
	}
	caText, err := valueOrFile(getenv("TEMPORAL_TLS_CA"), "TEMPORAL_TLS_CA")
	if err != nil {
		return c, err
	}
	serverName := getenv("TEMPORAL_TLS_SERVER_NAME")
	apiKey, err := valueOrFile(getenv("TEMPORAL_API_KEY"), "TEMPORAL_API_KEY")
	if err != nil {
		return c, err
	}
	wantTLS := certText != "" || caText != "" || serverName != "" || apiKey != "" || isTrue(getenv("TEMPORAL_TLS"))
	if (certText == "") != (keyText == "") {
		return c, errors.New("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (the client certificate and its key)")
	}
	if wantTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
		if caText != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(caText)) {
				return c, errors.New("TEMPORAL_TLS_CA: no PEM certificate in it")
			}
			cfg.RootCAs = pool
		}
		if certText != "" {
			pair, err := tls.X509KeyPair([]byte(certText), []byte(keyText))
			if err != nil {
				return c, fmt.Errorf("TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		c.TLS = cfg
	}
	if apiKey = strings.TrimSpace(apiKey); apiKey != "" {
		c.Credentials = client.NewAPIKeyStaticCredentials(apiKey)
		c.APIKey = true
	}
	return c, nil
}

// Options returns client.Options with the connection settings.
func (c Connection) Options(o client.Options) client.Options {
	o.HostPort, o.Namespace = c.HostPort, c.Namespace
	if c.TLS != nil {
		o.ConnectionOptions.TLS = c.TLS
	}
	if c.Credentials != nil {
		o.Credentials = c.Credentials
	}
	return o
}

// valueOrFile is v itself when it holds PEM or has no path shape, else the content of the file v.
func valueOrFile(v, name string) (string, error) {
	if v == "" || strings.Contains(v, "-----BEGIN") {
		return v, nil
	}
	if strings.ContainsAny(v, "/\\") || fileExists(v) {
		b, err := os.ReadFile(v)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return string(b), nil
	}
	return v, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func isTrue(v string) bool {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}
