package activities

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

func TestCatalogRace(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"two sessions create one index name", &pgconn.PgError{Code: "23505", ConstraintName: "pg_class_relname_nsp_index"}, true},
		{"wrapped", fmt.Errorf("create index: %w", &pgconn.PgError{Code: "23505", ConstraintName: "pg_type_typname_nsp_index"}), true},
		{"a user's unique index", &pgconn.PgError{Code: "23505", ConstraintName: "items_pkey"}, false},
		{"another error", &pgconn.PgError{Code: "42P07", ConstraintName: "pg_class_relname_nsp_index"}, false},
		{"not from the server", errors.New("23505"), false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { require.Equal(t, tt.want, catalogRace(tt.err)) })
	}
}
