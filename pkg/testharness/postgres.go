// Package testharness starts real, throwaway servers for tests and benchmarks: PostgreSQL clusters
// created with initdb/pg_ctl on free ports in temporary directories (run as the postgres user when
// the process is root), and a Temporal dev server from the temporal CLI.
package testharness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/skein-dts/skein/pkg/spec"
)

// PostgresOptions configure a cluster.
type PostgresOptions struct {
	Logical  bool     // wal_level=logical (a source)
	Settings []string // extra postgresql.conf lines
	// Files are written into the data directory before the server starts (mode 0600), e.g.
	// server.crt and server.key for ssl = on.
	Files map[string][]byte

	// Major is the server's PostgreSQL major version (see MajorBinDir); 0 is the system's.
	Major int

	binDir string // server binaries other than PostgreSQL's (NewIvorySQL)
	oracle bool   // IvorySQL: also listen on an Oracle-mode port
}

// Postgres is a running throwaway cluster. Its superuser is "postgres", trusted on 127.0.0.1.
type Postgres struct {
	Dir  string
	Port int
	// OraclePort is IvorySQL's Oracle-mode port (ivorysql.port); 0 on PostgreSQL.
	OraclePort int
	binDir     string
	runAs      string // "postgres" when we are root
}

// BinDir finds the PostgreSQL server binaries: $PG_BINDIR, the newest /usr/lib/postgresql/*/bin,
// or initdb on PATH.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("PostgreSQL server binaries not found: install them (apt-get install postgresql) or set PG_BINDIR")
}

func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartPostgres creates and starts a cluster in a new temporary directory.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	bin := opts.binDir
	var err error
	switch {
	case bin != "":
	case opts.Major != 0:
		if bin, err = MajorBinDir(ctx, opts.Major); err != nil {
			return nil, err
		}
	default:
		if bin, err = BinDir(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "skein-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: dir, binDir: bin}
	if os.Geteuid() == 0 {
		p.runAs = "postgres"
	}
	if err := p.chown(dir); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	template, err := initdbOnce(ctx, p)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if out, err := p.runCmd(ctx, "cp", "-a", template, data); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("copy the initdb template: %w: %s", err, out)
	}
	for name, content := range opts.Files {
		path := filepath.Join(data, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			return nil, err
		}
		if p.runAs != "" {
			if out, err := exec.Command("chown", p.runAs+":", path).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("chown %s: %w: %s", path, err, out)
			}
		}
	}
	walLevel := "replica"
	if opts.Logical {
		walLevel = "logical"
	}
	for attempt := 0; ; attempt++ {
		p.Port, err = FreePort()
		if err != nil {
			return nil, err
		}
		if opts.oracle {
			if p.OraclePort, err = FreePort(); err != nil {
				return nil, err
			}
		}
		conf := []string{
			fmt.Sprintf("port = %d", p.Port),
			"listen_addresses = '127.0.0.1'",
			fmt.Sprintf("unix_socket_directories = '%s'", dir),
			"wal_level = " + walLevel,
			"max_wal_senders = 20", "max_replication_slots = 20",
			"fsync = off", "synchronous_commit = off", "full_page_writes = off",
			"shared_buffers = 64MB", "max_connections = 100",
			"log_min_messages = warning",
		}
		if opts.oracle {
			conf = append(conf, fmt.Sprintf("ivorysql.port = %d", p.OraclePort), "ivorysql.listen_addresses = '127.0.0.1'")
		}
		conf = append(conf, opts.Settings...)
		if err := writeConf(filepath.Join(data, "postgresql.auto.conf"), conf); err != nil {
			return nil, err
		}
		out, err := p.run(ctx, "pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start")
		if err == nil {
			return p, nil
		}
		if attempt >= 2 {
			logText, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("pg_ctl start: %w: %s\n%s", err, out, logText)
		}
	}
}

// chown gives dir to the server's user when the process is root.
func (p *Postgres) chown(dir string) error {
	if p.runAs == "" {
		return nil
	}
	u, err := user.Lookup(p.runAs)
	if err != nil {
		return fmt.Errorf("running as root needs a %s user to run the server: %w", p.runAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

func writeConf(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// templateMu serializes the making of template data directories within this process.
var templateMu sync.Mutex

// initdbOnce returns the template data directory for p's binaries: a cluster is a copy of it, the
// same as initdb would make in a twentieth of the time (the tests start about a hundred clusters).
// It is made once and kept in $TMPDIR, named by the binaries folder and its initdb's size and
// time, so that every test binary and every later run finds it; the rename that completes it is
// atomic, so concurrent makers agree.
func initdbOnce(ctx context.Context, p *Postgres) (string, error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	st, err := os.Stat(filepath.Join(p.binDir, "initdb"))
	if err != nil {
		return "", fmt.Errorf("initdb: %w", err)
	}
	key := sha256.Sum256([]byte(fmt.Sprintf("%s|%d|%d", p.binDir, st.Size(), st.ModTime().UnixNano())))
	dir := filepath.Join(os.TempDir(), "skein-pg-template-"+hex.EncodeToString(key[:])[:12])
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil {
		return data, nil
	}
	tmp, err := os.MkdirTemp("", "skein-pg-template-making-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	t := &Postgres{Dir: tmp, binDir: p.binDir, runAs: p.runAs}
	if err := t.chown(tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if out, err := t.run(ctx, "initdb", "-D", filepath.Join(tmp, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return "", fmt.Errorf("initdb: %w: %s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(data, "PG_VERSION")); statErr == nil {
			return data, nil // another process made it first
		}
		return "", fmt.Errorf("keep the initdb template in %s: %w", dir, err)
	}
	return data, nil
}

func (p *Postgres) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return p.runCmd(ctx, filepath.Join(p.binDir, name), args...)
}

// runCmd runs a command in p's directory as the server's user.
func (p *Postgres) runCmd(ctx context.Context, bin string, args ...string) ([]byte, error) {
	var cmd *exec.Cmd
	if p.runAs != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", p.runAs, "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	cmd.Dir = p.Dir
	return cmd.CombinedOutput()
}

// Stop stops the server and removes its directory.
func (p *Postgres) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := p.run(ctx, "pg_ctl", "-D", filepath.Join(p.Dir, "data"), "-m", "immediate", "-w", "stop")
	rmErr := os.RemoveAll(p.Dir)
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return rmErr
}

// Restart stops the server (fast) and starts it again on the same port (for outage tests).
func (p *Postgres) Restart(ctx context.Context, down time.Duration) error {
	return p.RestartMode(ctx, "fast", down)
}

// Endpoint is the spec endpoint of database db as the superuser: the port applications use, which
// on an IvorySQL cluster is its Oracle-mode port.
func (p *Postgres) Endpoint(db string) spec.Endpoint {
	port := p.Port
	if p.OraclePort != 0 {
		port = p.OraclePort
	}
	return spec.Endpoint{Host: "127.0.0.1", Port: port, Database: db, User: "postgres", TLS: spec.TLS{Mode: "disable"}}
}

// Oracle reports an IvorySQL cluster, whose Endpoint starts sessions in Oracle mode.
func (p *Postgres) Oracle() bool { return p.OraclePort != 0 }

// URL is a connection string for database db on Port (PostgreSQL semantics on every cluster).
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Connect opens a connection to database db.
func (p *Postgres) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, p.URL(db))
}

// CreateDatabase creates database name.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	conn, err := p.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// NewPostgres starts a cluster for a test and stops it when the test ends; under -short the
// test is skipped (make test-unit starts no server).
func NewPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL server: not under -short (make test-unit)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartPostgres(ctx, opts)
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop PostgreSQL: %v", err)
		}
	})
	return p
}

// RestartMode stops the server with mode ("fast" or "immediate": a crash, recovered at start)
// and starts it again on the same port after down.
func (p *Postgres) RestartMode(ctx context.Context, mode string, down time.Duration) error {
	if err := p.StopServer(ctx, mode); err != nil {
		return err
	}
	time.Sleep(down)
	return p.StartServer(ctx)
}

// StopServer stops the server with mode (fast or immediate) and keeps its data.
func (p *Postgres) StopServer(ctx context.Context, mode string) error {
	if out, err := p.run(ctx, "pg_ctl", "-D", filepath.Join(p.Dir, "data"), "-m", mode, "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %w: %s", mode, err, out)
	}
	return nil
}

// StartServer starts a server StopServer stopped.
func (p *Postgres) StartServer(ctx context.Context) error {
	if out, err := p.run(ctx, "pg_ctl", "-D", filepath.Join(p.Dir, "data"), "-l", filepath.Join(p.Dir, "server.log"), "-w", "-t", "120", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	return nil
}

// NewStandby makes a streaming standby of p from a copy of its data directory taken while p is
// stopped for a moment, so the copy holds p's replication slots too (pg_basebackup leaves them
// out), as a standby whose slots are synchronized would. The standby follows p until promoted.
func (p *Postgres) NewStandby(t testing.TB) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "skein-pg-")
	if err != nil {
		t.Fatal(err)
	}
	sb := &Postgres{Dir: dir, binDir: p.binDir, runAs: p.runAs}
	t.Cleanup(func() {
		if t.Failed() {
			logText, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			t.Logf("standby's server log:\n%s", logText)
		}
		if err := sb.Stop(); err != nil {
			t.Logf("stop the standby: %v", err)
		}
	})
	if err := p.StopServer(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	out, cpErr := exec.Command("cp", "-a", filepath.Join(p.Dir, "data"), filepath.Join(dir, "data")).CombinedOutput()
	if err := p.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if cpErr != nil {
		t.Fatalf("copy the data directory: %v: %s", cpErr, out)
	}
	if p.runAs != "" {
		if out, err := exec.Command("chown", p.runAs+":", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v: %s", dir, err, out)
		}
	}
	if sb.Port, err = FreePort(); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	conf, err := os.ReadFile(filepath.Join(data, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	lines := append(strings.Split(strings.TrimSpace(string(conf)), "\n"),
		fmt.Sprintf("port = %d", sb.Port), fmt.Sprintf("unix_socket_directories = '%s'", dir),
		fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres'", p.Port))
	if err := writeConf(filepath.Join(data, "postgresql.auto.conf"), lines); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "standby.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.runAs != "" {
		_ = exec.Command("chown", "-R", p.runAs+":", data).Run()
	}
	if err := sb.StartServer(ctx); err != nil {
		logText, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("start the standby: %v\n%s", err, logText)
	}
	return sb
}

// Promote ends a standby's recovery: it becomes a primary on a new timeline.
func (p *Postgres) Promote(ctx context.Context) error {
	if out, err := p.run(ctx, "pg_ctl", "-D", filepath.Join(p.Dir, "data"), "-w", "promote"); err != nil {
		return fmt.Errorf("pg_ctl promote: %w: %s", err, out)
	}
	return nil
}

// Bin is the path of one of the cluster's server programs (pgbench, pg_dump, ...).
func (p *Postgres) Bin(name string) string { return filepath.Join(p.binDir, name) }
