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

// ErrNotAllowed is returned for a secret bound to other hosts than the one it would go to.
var ErrNotAllowed = errors.New("host not allowed for this secret")

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
	getenv, dir := r.where()
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

// HostsSuffix ends the name of the file beside a secret that lists the hosts it may be sent to:
// $SKEIN_SECRETS_DIR/<name>.hosts (or SKEIN_SECRET_<NAME>_HOSTS), one host or host:port per line
// (or comma-separated). Without one, a secret may be sent to any host a task names.
const HostsSuffix = ".hosts"

// ResolveFor is Resolve for a secret sent to host:port (a database password): when the worker's
// operator bound the secret to hosts, another host gets an error that names both, and nothing.
func (r Resolver) ResolveFor(name, host string, port int) (string, error) {
	value, err := r.Resolve(name)
	if err != nil {
		return "", err
	}
	allowed, bound, err := r.hosts(name)
	if err != nil || !bound {
		return value, err
	}
	target := fmt.Sprintf("%s:%d", host, port)
	for _, a := range allowed {
		if strings.EqualFold(a, host) || strings.EqualFold(a, target) {
			return value, nil
		}
	}
	return "", fmt.Errorf("secret %q may be sent only to %s (its %s list), not to %s: %w; correct the task's host, or the worker's list",
		name, strings.Join(allowed, ", "), HostsSuffix, target, ErrNotAllowed)
}

// where returns the environment lookup and the secrets directory.
func (r Resolver) where() (getenv func(string) string, dir string) {
	getenv = r.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	dir = r.Dir
	if dir == "" {
		dir = getenv("SKEIN_SECRETS_DIR")
	}
	return getenv, dir
}

// hosts reads the hosts a secret is bound to.
func (r Resolver) hosts(name string) (list []string, bound bool, err error) {
	getenv, dir := r.where()
	var text string
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, name+HostsSuffix))
		switch {
		case err == nil:
			text, bound = string(b), true
		case !errors.Is(err, os.ErrNotExist):
			return nil, false, fmt.Errorf("secret %q: read its hosts: %w", name, err)
		}
	}
	if !bound {
		if v := getenv(EnvName(name) + "_HOSTS"); v != "" {
			text, bound = v, true
		}
	}
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == '\n' || r == ',' || r == '\r' }) {
		if f = strings.TrimSpace(f); f != "" && !strings.HasPrefix(f, "#") {
			list = append(list, f)
		}
	}
	return list, bound, nil
}
