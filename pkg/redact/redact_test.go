package redact

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestMessagesAndDetails(t *testing.T) {
	tests := []struct {
		code, msg, detail   string
		wantMsg, wantDetail string
	}{
		{"23514", `new row for relation "people" violates check constraint "ssn_format"`, `Failing row contains (7, 123-45-6789, x).`,
			`new row for relation "people" violates check constraint "ssn_format"`, `Failing row contains (value redacted).`},
		{"23502", `null value in column "name" of relation "t" violates not-null constraint`, "Failing row contains (1, null).",
			`null value in column "name" of relation "t" violates not-null constraint`, "Failing row contains (value redacted)."},
		{"23505", `duplicate key value violates unique constraint "t_pkey"`, "Key (id)=(5) already exists.",
			`duplicate key value violates unique constraint "t_pkey"`, "Key (id)=(5) already exists."},
		{"22P02", `invalid input syntax for type integer: "123-45-6789"`, "", `invalid input syntax for type integer: (value redacted)`, ""},
		{"22003", `value "99999999999" is out of range for type integer`, "", `value (value redacted) is out of range for type integer`, ""},
		{"22001", `value too long for type character varying(5)`, "", `value too long for type character varying(5)`, ""},
		{"22021", `invalid byte sequence for encoding "UTF8": 0xe9 0x80`, "", `invalid byte sequence for encoding "UTF8": (value redacted)`, ""},
		{"22012", `division by zero`, "", `division by zero`, ""},
		{"42703", `column "extra" of relation "fixed" does not exist`, "", `column "extra" of relation "fixed" does not exist`, ""},
		{"22P02", `invalid input value for enum mood: "furious"`, "", `invalid input value for enum mood: (value redacted)`, ""},
		{"22023", `x`, `Array value must start with "{" or dimension information.`, "x", Marker},
	}
	for _, tt := range tests {
		t.Run(tt.code+" "+tt.msg, func(t *testing.T) {
			require.Equal(t, tt.wantMsg, Message(tt.code, tt.msg))
			require.Equal(t, tt.wantDetail, Detail(tt.detail))
		})
	}
}

// TestTextRedactsTheWholeChain: a server error wrapped with its DETAIL and context keeps the
// context, the key and the constraint, and loses the row's values.
func TestTextRedactsTheWholeChain(t *testing.T) {
	pg := &pgconn.PgError{Severity: "ERROR", Code: "23514", Message: `new row for relation "people" violates check constraint "ssn_format"`,
		Detail: "Failing row contains (7, SECRET-MARKER)."}
	err := fmt.Errorf("insert into app.people key (id=7): %w", fmt.Errorf("%w (%s)", pg, pg.Detail))
	joined := errors.Join(errors.New("first"), err)
	for _, e := range []error{err, joined} {
		text := Text(e)
		require.NotContains(t, text, "SECRET-MARKER")
		require.Contains(t, text, "key (id=7)")
		require.Contains(t, text, `check constraint "ssn_format"`)
		require.Contains(t, text, "Failing row contains (value redacted).")
	}
	require.Equal(t, "connection refused", Text(errors.New("connection refused")))
}
