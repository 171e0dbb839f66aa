package precheck

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/spec"
)

// firstNormalObjectID is PostgreSQL's FirstNormalObjectId: objects below it come with the server.
const firstNormalObjectID = 16384

// Patterns over a stored rule's node tree (pg_rewrite.ev_action as text), whose field names have
// been stable since PostgreSQL 10.
var (
	funcIDs      = regexp.MustCompile(`\{FUNCEXPR :funcid (\d+)`)
	opFuncIDs    = regexp.MustCompile(`:opfuncid (\d+)`)
	opIDs        = regexp.MustCompile(`\{(?:OPEXPR|DISTINCTEXPR|NULLIFEXPR|SCALARARRAYOPEXPR) :opno (\d+)`)
	systemVars   = regexp.MustCompile(`\{VAR :varno \d+ :varattno -\d+`)
	typeIDs      = regexp.MustCompile(`:(?:vartype|consttype|resulttype|funcresulttype|opresulttype|array_typeid|element_typeid|minmaxtype|casetype|coalescetype|row_typeid) (\d+)`)
	collationIDs = regexp.MustCompile(`:(?:varcollid|constcollid|inputcollid|funccollid|opcollid|resultcollid|collid|minmaxcollid|casecollid|coalescecollid) (\d+)`)
	// Nodes a publication row filter does not allow at all.
	refusedNodes = map[string]string{
		"{SUBLINK":           "subqueries are not allowed",
		"{SQLVALUEFUNCTION":  "CURRENT_DATE, CURRENT_USER and the like are not immutable",
		"{AGGREF":            "aggregates are not allowed",
		"{WINDOWFUNC":        "window functions are not allowed",
		"{NEXTVALUEEXPR":     "sequences are not allowed",
		"{CURRENTOFEXPR":     "CURRENT OF is not allowed",
		"{GROUPINGFUNC":      "GROUPING is not allowed",
		"{SETTOMULTIPLEEXPR": "not allowed",
	}
)

// ruleFilterCheck judges a row filter as PostgreSQL 15 judges publication row filters, for
// sources older than 15 that cannot: only the table's columns, constants, built-in types,
// collations and operators, and immutable built-in functions; no subqueries or system columns.
// It stores the filter in a temporary view, in a transaction rolled back (nothing the filter
// names runs), and reads the view's parsed expression from pg_rewrite. An account that may not
// create temporary objects leaves the filter to the plan.
func ruleFilterCheck(ctx context.Context, conn *pgx.Conn, tm spec.TableMap) error {
	return rolledBack(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "CREATE TEMPORARY VIEW skein_filter_check AS SELECT 1 FROM "+tm.Source.Quoted()+" WHERE "+tm.WhereSQL())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return nil
		}
		if err != nil {
			return err
		}
		var tree string
		if err := tx.QueryRow(ctx, `SELECT r.ev_action::text FROM pg_catalog.pg_rewrite r
		WHERE r.ev_class = 'pg_temp.skein_filter_check'::pg_catalog.regclass`).Scan(&tree); err != nil {
			return fmt.Errorf("read the filter's parsed form: %w", err)
		}
		return judgeFilterTree(ctx, tx, tree)
	})
}

// rolledBack runs fn in a transaction on conn that is never committed: what a check creates
// leaves no trace.
func rolledBack(ctx context.Context, conn *pgx.Conn, fn func(tx pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // never committed
	return fn(tx)
}

// judgeFilterTree finds in a filter's node tree what a publication row filter may not hold.
func judgeFilterTree(ctx context.Context, tx pgx.Tx, tree string) error {
	var problems []string
	for node, why := range refusedNodes {
		if strings.Contains(tree, node) {
			problems = append(problems, why)
		}
	}
	if systemVars.MatchString(tree) {
		problems = append(problems, "system columns are not allowed")
	}
	if ids := oidsOf(typeIDs, tree); slices.ContainsFunc(ids, userObject) {
		problems = append(problems, "user-defined types are not allowed")
	}
	if ids := oidsOf(collationIDs, tree); slices.ContainsFunc(ids, userObject) {
		problems = append(problems, "user-defined collations are not allowed")
	}
	if ids := oidsOf(opIDs, tree); slices.ContainsFunc(ids, userObject) {
		problems = append(problems, "user-defined operators are not allowed")
	}
	funcs := append(oidsOf(funcIDs, tree), oidsOf(opFuncIDs, tree)...)
	if len(funcs) > 0 {
		rows, err := tx.Query(ctx, `SELECT p.oid::pg_catalog.int8, p.oid::pg_catalog.regprocedure::pg_catalog.text, p.provolatile::pg_catalog.text
			FROM pg_catalog.pg_proc p WHERE p.oid::pg_catalog.int8 = ANY($1) ORDER BY 2`, funcs)
		if err != nil {
			return fmt.Errorf("look up the filter's functions: %w", err)
		}
		for rows.Next() {
			var oid int64
			var name, volatility string
			if err := rows.Scan(&oid, &name, &volatility); err != nil {
				rows.Close()
				return err
			}
			switch {
			case userObject(oid):
				problems = append(problems, fmt.Sprintf("user-defined function %s is not allowed", name))
			case volatility != "i":
				problems = append(problems, fmt.Sprintf("function %s is not immutable", name))
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	if len(problems) == 0 {
		return nil
	}
	slices.Sort(problems)
	return fmt.Errorf("only columns, constants, built-in operators, types and collations, and immutable built-in functions are allowed: %s",
		strings.Join(slices.Compact(problems), "; "))
}

func oidsOf(re *regexp.Regexp, tree string) []int64 {
	var out []int64
	for _, m := range re.FindAllStringSubmatch(tree, -1) {
		if n, err := strconv.ParseInt(m[1], 10, 64); err == nil && n != 0 {
			out = append(out, n)
		}
	}
	return out
}

func userObject(oid int64) bool { return oid >= firstNormalObjectID }
