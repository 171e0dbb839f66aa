// Package secrets resolves the secret names of a task spec on the worker, from
// $SKEIN_SECRETS_DIR/<name> or the environment variable SKEIN_SECRET_<NAME>. Nothing else in the
// worker's environment can be referenced.
package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrNotFound is returned when a named secret is in neither place.
var ErrNotFound = errors.New("secret not found")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// Resolver looks secrets up. The zero value reads the process environment.
type Resolver struct {
	Dir    string                  // the secrets directory; "" = $SKEIN_SECRETS_DIR
	Getenv func(key string) string // "" = os.Getenv
}

// EnvName is the environment variable that can hold secret name.
func EnvName(name string) string {
	return "SKEIN_SECRET_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Resolve returns the content of the named secret, with one trailing newline trimmed. Errors
// name the secret and where it was looked for, never its content.
func (r Resolver) Resolve(name string) (string, error) {
	if !nameRE.MatchString(name) || name == "." || name == ".." {
		return "", fmt.Errorf("secret %q: not a valid secret name", name)
	}
	getenv := r.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	dir := r.Dir
	if dir == "" {
		dir = getenv("SKEIN_SECRETS_DIR")
	}
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("secret %q: read %s: %w", name, filepath.Join(dir, name), err)
		}
	}
	if v := getenv(EnvName(name)); v != "" {
		return v, nil
	}
	where := EnvName(name)
	if dir != "" {
		where = filepath.Join(dir, name) + " or " + where
	}
	return "", fmt.Errorf("secret %q: %w: set %s on the worker", name, ErrNotFound, where)
}
