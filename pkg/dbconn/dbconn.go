// Package dbconn opens connections to the task's databases from a spec endpoint, resolving the
// password on the worker. Nothing from the worker's PG* environment is used.
package dbconn

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/secrets"
	"github.com/skein-dts/skein/pkg/spec"
)

// Opener turns spec endpoints into connections.
type Opener struct {
	Secrets        secrets.Resolver
	ConnectTimeout time.Duration // default 15s
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
		pw, err := o.Secrets.Resolve(ep.PasswordSecret)
		if err != nil {
			return nil, err
		}
		cfg.Password = pw
	}
	cfg.RuntimeParams = map[string]string{"application_name": "skein"}
	if replication {
		cfg.RuntimeParams["replication"] = "database"
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
		return nil, fmt.Errorf("connect to %s: %w", Describe(ep), err)
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
		return nil, fmt.Errorf("replication connect to %s: %w", Describe(ep), err)
	}
	return conn, nil
}

// Describe names an endpoint for logs and errors: user@host:port/database, no secret.
func Describe(ep spec.Endpoint) string {
	return fmt.Sprintf("%s@%s:%d/%s", ep.User, ep.Host, ep.Port, ep.Database)
}
