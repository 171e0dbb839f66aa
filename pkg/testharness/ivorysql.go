package testharness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// IvorySQLHow tells how to provide IvorySQL when it is not found.
const IvorySQLHow = "IvorySQL (the Oracle-mode destination) not found: set SKEIN_IVORYSQL to its tarball " +
	"(ivorysql-5.4-linux-amd64.tar.gz) or to an extracted ivorysql/ folder, or keep ../shared/ivorysql/ beside the repository"

// IvorySQLBinDir finds IvorySQL's server binaries: $SKEIN_IVORYSQL (a tarball, or a folder holding
// bin/ or ivorysql/bin/), else the tarball in ../shared/ivorysql/ beside the repository root. A
// tarball is extracted once into a cache folder readable by the postgres user
// ($TMPDIR/skein-ivorysql-<hash>). It returns "" with no error when IvorySQL is not provided.
func IvorySQLBinDir() (string, error) {
	src := os.Getenv("SKEIN_IVORYSQL")
	if src == "" {
		root, err := repoRoot()
		if err != nil {
			return "", nil
		}
		matches, _ := filepath.Glob(filepath.Join(root, "..", "shared", "ivorysql", "ivorysql-*.tar.gz"))
		if len(matches) == 0 {
			return "", nil
		}
		src = matches[len(matches)-1]
	}
	st, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("SKEIN_IVORYSQL %s: %w", src, err)
	}
	if st.IsDir() {
		for _, d := range []string{filepath.Join(src, "bin"), filepath.Join(src, "ivorysql", "bin")} {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
		return "", fmt.Errorf("%s holds no bin/initdb", src)
	}
	return extractOnce(src)
}

// extractOnce unpacks tarball into a cache folder named by its content hash, once: a second
// caller (another test binary) finds it complete or waits for the rename that completes it.
func extractOnce(tarball string) (string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "skein-ivorysql-"+hex.EncodeToString(h.Sum(nil))[:12])
	bin := filepath.Join(dir, "ivorysql", "bin")
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "skein-ivorysql-extract-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.Command("tar", "-xzf", tarball, "-C", tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("extract %s: %w: %s", tarball, err, out)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another process extracted it first.
		if _, statErr := os.Stat(filepath.Join(bin, "initdb")); statErr == nil {
			return bin, nil
		}
		return "", fmt.Errorf("move the extracted IvorySQL into %s: %w", dir, err)
	}
	return bin, nil
}

// repoRoot walks up from the working directory to the folder holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// NewIvorySQL starts an IvorySQL cluster (Oracle mode, as initdb makes it) for a test, listening
// on a PostgreSQL-mode port (Port) and an Oracle-mode port (OraclePort). Without IvorySQL the
// test is skipped with IvorySQLHow, unless SKEIN_REQUIRE_IVORYSQL=1 (CI): then it fails.
func NewIvorySQL(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	bin, err := IvorySQLBinDir()
	if err != nil {
		t.Fatalf("IvorySQL: %v", err)
	}
	if bin == "" {
		if os.Getenv("SKEIN_REQUIRE_IVORYSQL") == "1" {
			t.Fatal(IvorySQLHow)
		}
		t.Skip(IvorySQLHow)
	}
	opts.binDir = bin
	opts.oracle = true
	return NewPostgres(t, opts)
}

// SharedDir returns ../shared/name beside the repository root, if it exists.
func SharedDir(name string) (string, bool) {
	root, err := repoRoot()
	if err != nil {
		return "", false
	}
	dir := filepath.Join(root, "..", "shared", name)
	if _, err := os.Stat(dir); err != nil {
		return "", false
	}
	return dir, true
}
