package precheck

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestRuleFilterCheckAgreesWithPublications: Skein's check for sources older than 15 accepts and
// refuses the filters PostgreSQL 15's publications accept and refuse, each with its reason.
func TestRuleFilterCheckAgreesWithPublications(t *testing.T) {
	ctx := context.Background()
	pg := testharness.NewPostgres(t, testharness.PostgresOptions{})
	require.NoError(t, pg.CreateDatabase(ctx, "f"))
	conn, err := pg.Connect(ctx, "f")
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE TABLE public.orders (id int PRIMARY KEY, region text, amount numeric, created date, tags text[], m mood);
CREATE TABLE public.other (id int);
CREATE FUNCTION public.is_eu(text) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT $1 = ''eu''';
CREATE COLLATION public.mine (provider = libc, locale = 'C');`)
	require.NoError(t, err)

	cases := []struct {
		where  string
		reason string // "" = allowed
	}{
		{"region = 'eu'", ""},
		{"id > 5 AND lower(region) IN ('eu', 'us')", ""},
		{"created >= DATE '2024-01-01' OR amount IS NULL", ""},
		{"region ~ '^e' AND coalesce(amount, 0) < 100.5", ""},
		{"'a' = ANY (tags)", ""},
		{"random() < 0.5", "function random() is not immutable"},
		{"created > now()", "function now() is not immutable"},
		{"id IN (SELECT id FROM public.other)", "subqueries are not allowed"},
		{"ctid = '(0,1)'", "system columns are not allowed"},
		{"public.is_eu(region)", "user-defined function is_eu(text) is not allowed"},
		{"m = 'ok'", "user-defined types are not allowed"},
		{"region COLLATE public.mine = 'eu'", "user-defined collations are not allowed"},
		{"created < CURRENT_DATE", "not immutable"},
	}
	for _, tc := range cases {
		t.Run(tc.where, func(t *testing.T) {
			tm := spec.TableMap{Source: spec.QName{Schema: "public", Name: "orders"}, Where: tc.where}
			ours := ruleFilterCheck(ctx, conn, tm)
			theirs := publicationFilterCheck(ctx, conn, tm)
			if tc.reason == "" {
				require.NoError(t, theirs, "PostgreSQL allows it")
				require.NoError(t, ours)
				return
			}
			require.Error(t, theirs, "PostgreSQL refuses it")
			require.Error(t, ours)
			require.Contains(t, ours.Error(), tc.reason)
		})
	}
}
