// Package redact keeps row values out of what Skein reports. Errors, the workflow history,
// status, logs and webhooks name the task, table, operation, constraint, column and the row's key
// (an operator needs it to find the row); the other values a server's error carries (the DETAIL
// "Failing row contains (...)", the value in "invalid input syntax for type integer: ...") are
// replaced before the text leaves the worker.
package redact

import (
	"errors"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Marker replaces a value.
const Marker = "(value redacted)"

// Text is err's text with the row values of every server error in its chain redacted.
func Text(err error) string {
	if err == nil {
		return ""
	}
	text := err.Error()
	for _, pgErr := range serverErrors(err) {
		if m := Message(pgErr.Code, pgErr.Message); m != pgErr.Message {
			text = strings.ReplaceAll(text, pgErr.Message, m)
		}
		if d := Detail(pgErr.Detail); d != pgErr.Detail && pgErr.Detail != "" {
			text = strings.ReplaceAll(text, pgErr.Detail, d)
		}
	}
	return text
}

// serverErrors lists the server errors in err's chain (joined and wrapped errors alike).
func serverErrors(err error) []*pgconn.PgError {
	var out []*pgconn.PgError
	var walk func(error)
	walk = func(e error) {
		for e != nil {
			if pg, ok := e.(*pgconn.PgError); ok {
				out = append(out, pg)
			}
			switch u := e.(type) {
			case interface{ Unwrap() []error }:
				for _, inner := range u.Unwrap() {
					walk(inner)
				}
				return
			default:
				e = errors.Unwrap(e)
			}
		}
	}
	walk(err)
	return out
}

// failingRow is the DETAIL of CHECK and NOT NULL violations: the whole row.
var failingRow = regexp.MustCompile(`(?s)^Failing row contains \(.*\)\.?$`)

// Detail redacts a server error's DETAIL: a failing row becomes the marker; the conflicting key
// of a unique, foreign key or exclusion violation ("Key (id)=(5) already exists.") stays.
func Detail(detail string) string {
	if failingRow.MatchString(detail) {
		return "Failing row contains " + Marker + "."
	}
	if strings.HasPrefix(detail, "Key (") || strings.HasPrefix(detail, "Key columns") {
		return detail
	}
	if strings.Contains(detail, `"`) || strings.Contains(detail, "(") {
		return Marker
	}
	return detail
}

var (
	// quotedValue is a value quoted after a colon: invalid input syntax for type integer: "x".
	quotedValue = regexp.MustCompile(`: ".*"$`)
	// valueWord is a value quoted after the word value: value "123" is out of range.
	valueWord = regexp.MustCompile(`value "(?:[^"]|"")*"`)
	// afterColon is everything after the first ": " (invalid byte sequence ...: 0xe9 0x80).
	afterColon = regexp.MustCompile(`: .*$`)
)

// Message redacts a server error's message. Data exceptions (SQLSTATE class 22) quote the value
// that failed; other classes name only objects.
func Message(code, msg string) string {
	if !strings.HasPrefix(code, "22") {
		return msg
	}
	out := quotedValue.ReplaceAllString(msg, ": "+Marker)
	out = valueWord.ReplaceAllString(out, "value "+Marker)
	if out == msg && strings.Contains(msg, ": ") {
		out = afterColon.ReplaceAllString(msg, ": "+Marker)
	}
	return out
}
