// Package dbconn opens connections to the task's databases from a spec endpoint, resolving the
// password on the worker. Nothing from the worker's PG* environment is used.
package dbconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/dialect"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/secrets"
	"github.com/skein-dts/skein/pkg/spec"
)

// CaptureSetting is the session setting that turns Skein's schema-change capture off
// (pkg/ddlcapture): every session Skein opens on a source sets it to "off", so that what Skein
// itself changes there (replica identities, publications) is not captured as a schema change.
const CaptureSetting = "skein.ddl_capture"

// Opener turns spec endpoints into connections.
type Opener struct {
	Secrets        secrets.Resolver
	ConnectTimeout time.Duration // default 15s
	// Budget, when set, caps the connections open at once through every Opener sharing it.
	Budget *Budget
	// Traffic, when set, watches the next connection this Opener opens (see Traffic).
	Traffic *Traffic
}

// Config builds the pgx configuration of ep. replication adds replication=database.
func (o Opener) Config(ep spec.Endpoint, replication bool) (*pgx.ConnConfig, error) {
	// ParseConfig("") would read PG* variables and ~/.pgpass: start from a fixed string instead
	// and set every field ourselves.
	cfg, err := pgx.ParseConfig("host=localhost sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host = ep.Host
	cfg.Port = uint16(ep.Port)
	cfg.Database = ep.Database
	cfg.User = ep.User
	cfg.Password = ""
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.ConnectTimeout = o.ConnectTimeout
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if ep.PasswordSecret != "" {
		// A password goes only to the hosts its secret is bound to (secrets.HostsSuffix).
		pw, err := o.Secrets.ResolveFor(ep.PasswordSecret, ep.Host, ep.Port)
		if errors.Is(err, secrets.ErrNotAllowed) {
			return nil, errclass.Permanent(err)
		}
		if err != nil {
			return nil, err
		}
		cfg.Password = pw
	}
	if cfg.TLSConfig, err = o.tlsConfig(ep); err != nil {
		return nil, err
	}
	if cfg.TLSConfig == nil {
		// Without TLS, a server (or whoever answers in its place) that asks for the password in
		// cleartext gets none; SCRAM and md5 send no password.
		cfg.RequireAuth = "!password"
	} else {
		cfg.ChannelBinding = "prefer" // SCRAM-SHA-256-PLUS binds the exchange to the TLS channel
	}
	cfg.RuntimeParams = map[string]string{"application_name": "skein"}
	for k, v := range dialect.TextFormats {
		cfg.RuntimeParams[k] = v
	}
	// Skein's own DDL on the source (REPLICA IDENTITY, publications) is not a schema change to
	// replicate.
	cfg.RuntimeParams[CaptureSetting] = "off"
	if replication {
		cfg.RuntimeParams["replication"] = "database"
	}
	if o.Traffic != nil {
		cfg.DialFunc = o.Traffic.dialer(cfg.DialFunc)
	}
	if o.Budget != nil {
		dial := cfg.DialFunc
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return o.Budget.dial(ctx, dial, network, addr)
		}
	}
	return cfg, nil
}

// Connect opens a regular connection to ep.
func (o Opener) Connect(ctx context.Context, ep spec.Endpoint) (*pgx.Conn, error) {
	cfg, err := o.Config(ep, false)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", ep.Describe(), err)
	}
	return conn, nil
}

// ConnectDestination opens a regular connection to a task's destination with PostgreSQL
// semantics (dialect.Pin): an Oracle-mode session is switched to PostgreSQL mode, the search path
// is pg_catalog alone (everything Skein sends names its schema), commits are synchronous (durable
// before Skein confirms them to the source), and a session that cannot be
// pinned fails at once with the reason (a permanent error). dialect.Of(conn.PgConn()) tells what
// was found and pinned.
func (o Opener) ConnectDestination(ctx context.Context, ep spec.Endpoint) (*pgx.Conn, error) {
	cfg, err := o.Config(ep, false)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["search_path"] = "pg_catalog"
	// A commit must be durable before Skein builds on it: the slot's position moves past applied
	// changes and a chunk counts as copied once its transaction commits. With a server default of
	// synchronous_commit = off, a destination crash would lose commits Skein already confirmed.
	cfg.RuntimeParams["synchronous_commit"] = "on"
	cfg.AfterConnect = func(ctx context.Context, c *pgconn.PgConn) error {
		_, err := dialect.Pin(ctx, c)
		var de *dialect.Error
		if errors.As(err, &de) {
			return errclass.Permanent(err)
		}
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", ep.Describe(), err)
	}
	return conn, nil
}

// ConnectReplication opens a logical replication connection to ep.
func (o Opener) ConnectReplication(ctx context.Context, ep spec.Endpoint) (*pgconn.PgConn, error) {
	cfg, err := o.Config(ep, true)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, &cfg.Config)
	if err != nil {
		return nil, fmt.Errorf("replication connect to %s: %w", ep.Describe(), err)
	}
	return conn, nil
}

// tlsConfig builds the TLS settings of ep with libpq's meaning of each mode: require encrypts
// without checking the server (unless a CA is given: then as verify-ca), verify-ca checks the
// certificate chain, verify-full also the host name. PEM contents come from secrets.
func (o Opener) tlsConfig(ep spec.Endpoint) (*tls.Config, error) {
	t := ep.TLS
	if t.Mode == "" || t.Mode == "disable" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	var roots *x509.CertPool
	if t.CASecret != "" {
		pem, err := o.Secrets.Resolve(t.CASecret)
		if err != nil {
			return nil, err
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(pem)) {
			return nil, fmt.Errorf("secret %q (tls.ca_secret): no PEM certificate in it", t.CASecret)
		}
	}
	if t.CertSecret != "" {
		certPEM, err := o.Secrets.Resolve(t.CertSecret)
		if err != nil {
			return nil, err
		}
		keyPEM, err := o.Secrets.Resolve(t.KeySecret)
		if err != nil {
			return nil, err
		}
		if t.KeyPasswordSecret != "" {
			password, err := o.Secrets.Resolve(t.KeyPasswordSecret)
			if err != nil {
				return nil, err
			}
			if keyPEM, err = decryptKey(keyPEM, password); err != nil {
				return nil, errclass.Permanent(fmt.Errorf("secrets %q and %q (tls.key_secret, tls.key_password_secret): %w", t.KeySecret, t.KeyPasswordSecret, err))
			}
		}
		pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
		if err != nil {
			// The error names no key material.
			return nil, fmt.Errorf("secrets %q and %q (tls.cert_secret, tls.key_secret): %w", t.CertSecret, t.KeySecret, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	mode := t.Mode
	if mode == "require" && roots != nil {
		mode = "verify-ca"
	}
	switch mode {
	case "require":
		cfg.InsecureSkipVerify = true
	case "verify-ca":
		// Check the chain, not the name: Go has no such mode, so verify by hand.
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyChain(raw, roots)
		}
	case "verify-full":
		cfg.RootCAs = roots
		cfg.ServerName = ep.Host
	default:
		return nil, fmt.Errorf("tls.mode %q is not one of disable, require, verify-ca, verify-full", t.Mode)
	}
	return cfg, nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return fmt.Errorf("the server sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, b := range raw {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}
