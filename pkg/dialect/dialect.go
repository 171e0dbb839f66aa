// Package dialect knows what a server's sessions mean by the SQL Skein sends: the product, its
// compatibility mode, and the settings that change how SQL is read (an Oracle-mode session of
// IvorySQL or PolarDB for PostgreSQL (Compatible with Oracle) folds quoted names, turns an empty
// string into NULL, reads date as Oracle DATE, searches sys before pg_catalog). Pin gives a session
// PostgreSQL semantics where the server lets a session choose and says exactly what it could not
// pin otherwise. It is the one place that knows these settings; every destination connection
// Skein opens (pkg/dbconn) goes through it.
package dialect

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// TextFormats are the session settings the text form of values depends on. Every session Skein
// opens, on the source (pgoutput writes values in the walsender's formats) and on the
// destination, starts with them, so a value read on one side is read back the same on the other.
var TextFormats = map[string]string{
	"DateStyle":                   "ISO, MDY",
	"IntervalStyle":               "postgres",
	"extra_float_digits":          "3",
	"standard_conforming_strings": "on",
	"bytea_output":                "hex",
}

// A setting changes what SQL means in a session. PG is the value with PostgreSQL semantics;
// ReportOnly settings do not change what Skein's SQL means (they are shown, never set).
type setting struct {
	Name       string
	PG         string
	Product    string
	ReportOnly bool
}

// settings are the settings Skein looks for, by product. A server without them is PostgreSQL.
var settings = []setting{
	// IvorySQL: the mode decides case folding, '' as NULL, date, varchar2 and the sys schema;
	// the others are shown for the record (they act only in Oracle mode).
	{Name: "ivorysql.compatible_mode", PG: "pg", Product: "IvorySQL"},
	{Name: "ivorysql.identifier_case_switch", Product: "IvorySQL", ReportOnly: true},
	{Name: "ivorysql.enable_emptystring_to_NULL", Product: "IvorySQL", ReportOnly: true},
	// PolarDB for PostgreSQL (Compatible with Oracle). Names differ between its versions
	// ("Oracle syntax compatibility" 1.0 and 2.0): the behaviour probes (probe) are what decides.
	{Name: "polar_compatibility_mode", Product: "PolarDB", ReportOnly: true},
	{Name: "polar_comp_redwood_date", PG: "off", Product: "PolarDB"},
	{Name: "polar_comp_redwood_strings", PG: "off", Product: "PolarDB"},
	{Name: "polar_comp_redwood_greatest_least", PG: "off", Product: "PolarDB"},
	// A failed statement rolls back only itself (1.0 name, then 2.0 name): Skein's batches rely
	// on a failed statement aborting the transaction.
	{Name: "polar_comp_stmt_level_tx", PG: "off", Product: "PolarDB"},
	{Name: "polar_enable_stmt_transaction_rollback", PG: "off", Product: "PolarDB"},
	// A DDL statement commits the open transaction: a schema change and its LSN would no longer
	// commit together.
	{Name: "polar_enable_ddl_implicit_commit", PG: "off", Product: "PolarDB"},
	{Name: "polar_empty_string_is_null_enable", PG: "off", Product: "PolarDB"},
	{Name: "polar_comp_redwood_raw_names", Product: "PolarDB", ReportOnly: true},
	{Name: "polar_enable_varchar2_length_with_byte", Product: "PolarDB", ReportOnly: true},
	{Name: "nls_date_format", Product: "PolarDB", ReportOnly: true},
	{Name: "nls_timestamp_format", Product: "PolarDB", ReportOnly: true},
	{Name: "nls_timestamp_tz_format", Product: "PolarDB", ReportOnly: true},
	// EDB Postgres Advanced Server (the Redwood settings PolarDB-O inherited).
	{Name: "edb_redwood_date", PG: "off", Product: "EDB Postgres Advanced Server"},
	{Name: "edb_redwood_strings", PG: "off", Product: "EDB Postgres Advanced Server"},
	{Name: "edb_redwood_greatest_least", PG: "off", Product: "EDB Postgres Advanced Server"},
	{Name: "edb_stmt_level_tx", PG: "off", Product: "EDB Postgres Advanced Server"},
	{Name: "edb_redwood_raw_names", Product: "EDB Postgres Advanced Server", ReportOnly: true},
}

// Dialect is what Skein found on a server and what it pinned for the session.
type Dialect struct {
	Product string `json:"product"` // PostgreSQL, IvorySQL, PolarDB, ...
	Version string `json:"version"` // version()
	// Mode is the compatibility mode sessions start in ("pg" on plain PostgreSQL, "oracle" on an
	// Oracle port).
	Mode string `json:"mode"`
	// Found are the meaning-changing settings as the session started, by name.
	Found map[string]string `json:"found,omitempty"`
	// Pinned are the settings Skein set for the session ("name = value").
	Pinned []string `json:"pinned,omitempty"`
	// Probes are the behaviours checked in the pinned session, each with what was found.
	Probes []Probe `json:"probes,omitempty"`
}

// Probe is one behaviour of a session that Skein checks by what the server does, not by which
// settings it lists.
type Probe struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Found says what the server did when the probe failed.
	Found string `json:"found,omitempty"`
}

// The behaviour probes, with the settings known to cause a failure of each (for the fix).
var probeFixes = map[string]string{
	probeCase:     "ivorysql.compatible_mode = pg, or the server's PostgreSQL-mode port",
	probeEmpty:    "ivorysql.enable_emptystring_to_NULL, polar_comp_redwood_strings, polar_empty_string_is_null_enable or edb_redwood_strings off",
	probeDate:     "polar_comp_redwood_date or edb_redwood_date off",
	probePath:     "a search_path starting with pg_catalog (the Oracle-mode sys schema comes first otherwise)",
	probeDDL:      "polar_enable_ddl_implicit_commit off",
	probeStmtRoll: "polar_comp_stmt_level_tx, polar_enable_stmt_transaction_rollback or edb_stmt_level_tx off",
}

const (
	probeCase     = "a quoted lower-case name stays lower-case"
	probeEmpty    = "an empty string is not NULL"
	probeDate     = "date is PostgreSQL's date"
	probePath     = "pg_catalog is searched first"
	probeDDL      = "a DDL statement does not commit the open transaction"
	probeStmtRoll = "a failed statement aborts its transaction"
)

// Oracle reports a server whose sessions start in an Oracle compatibility mode.
func (d Dialect) Oracle() bool { return d.Mode != "" && d.Mode != "pg" }

// String describes the dialect for a precheck item or a log line.
func (d Dialect) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s), sessions start in %s mode", d.Product, d.Version, d.Mode)
	if len(d.Found) > 0 {
		names := make([]string, 0, len(d.Found))
		for n := range d.Found {
			names = append(names, n)
		}
		slices.Sort(names)
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = n + " = " + d.Found[n]
		}
		fmt.Fprintf(&b, "; settings found: %s", strings.Join(parts, ", "))
	}
	if len(d.Pinned) > 0 {
		fmt.Fprintf(&b, "; Skein pins per session: %s", strings.Join(d.Pinned, ", "))
	} else {
		b.WriteString("; PostgreSQL semantics, nothing to pin")
	}
	if len(d.Probes) > 0 {
		parts := make([]string, len(d.Probes))
		for i, p := range d.Probes {
			if p.OK {
				parts[i] = p.Name + ": yes"
			} else {
				parts[i] = p.Name + ": NO (" + p.Found + ")"
			}
		}
		fmt.Fprintf(&b, "; probed: %s", strings.Join(parts, "; "))
	}
	return b.String()
}

// Error says why a session cannot be given PostgreSQL semantics, with the fix. It is permanent:
// connecting again changes nothing.
type Error struct {
	Dialect Dialect
	Reason  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("destination %s: %s; Skein needs PostgreSQL semantics in its sessions: connect to the server's PostgreSQL-mode port, or allow the session to set these parameters (ALTER ROLE ... SET or the server's parameter settings)",
		e.Dialect.Product, e.Reason)
}

const customDataKey = "skein.dialect"

// Of returns the dialect Pin recorded on conn (the zero Dialect when Pin did not run).
func Of(conn *pgconn.PgConn) Dialect {
	d, _ := conn.CustomData()[customDataKey].(Dialect)
	return d
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Detect reads the product, version and meaning-changing settings of conn's server.
func Detect(ctx context.Context, conn *pgconn.PgConn) (Dialect, error) {
	names := make([]string, len(settings))
	for i, s := range settings {
		if !settingName.MatchString(s.Name) {
			panic("dialect: bad setting name " + s.Name) // a constant of this file
		}
		names[i] = "'" + strings.ToLower(s.Name) + "'"
	}
	// Unquoted names and non-empty literals only: an Oracle-mode session reads this as meant.
	sql := `SELECT pg_catalog.version(), s.name, s.setting FROM (SELECT 1) AS one
	LEFT JOIN pg_catalog.pg_settings AS s ON pg_catalog.lower(s.name) IN (` + strings.Join(names, ", ") + `)`
	rows, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return Dialect{}, fmt.Errorf("read the server's settings: %w", err)
	}
	d := Dialect{Product: "PostgreSQL", Mode: "pg", Found: map[string]string{}}
	if len(rows) == 1 {
		for _, r := range rows[0].Rows {
			d.Version = string(r[0])
			if r[1] != nil {
				d.Found[canonicalName(string(r[1]))] = string(r[2])
			}
		}
	}
	for _, s := range settings {
		if _, ok := d.Found[s.Name]; ok && d.Product == "PostgreSQL" {
			d.Product = s.Product
		}
	}
	if m, ok := d.Found["ivorysql.compatible_mode"]; ok {
		d.Mode = m
	}
	if m, ok := d.Found["polar_compatibility_mode"]; ok && m != "" {
		d.Mode = strings.ToLower(m)
	}
	if d.Mode == "ora" {
		d.Mode = "oracle"
	}
	return d, nil
}

// canonicalName is the name of settings that name matches, ignoring case.
func canonicalName(name string) string {
	for _, s := range settings {
		if strings.EqualFold(s.Name, name) {
			return s.Name
		}
	}
	return name
}

// Pin detects conn's dialect, sets every meaning-changing setting to its PostgreSQL value, then
// checks that the session reads SQL as PostgreSQL does: quoted lower-case names kept, an empty string not
// NULL, date the PostgreSQL date, pg_catalog searched first. The dialect is recorded on conn (Of).
// A session that cannot be pinned returns an *Error.
func Pin(ctx context.Context, conn *pgconn.PgConn) (Dialect, error) {
	d, err := Detect(ctx, conn)
	if err != nil {
		return d, err
	}
	var sets []string
	for _, s := range settings {
		v, ok := d.Found[s.Name]
		if !ok || s.ReportOnly || strings.EqualFold(v, s.PG) {
			continue
		}
		sets = append(sets, fmt.Sprintf("SET %s = %s", s.Name, s.PG))
		d.Pinned = append(d.Pinned, s.Name+" = "+s.PG)
	}
	if len(sets) > 0 {
		if _, err := conn.Exec(ctx, strings.Join(sets, "; ")).ReadAll(); err != nil {
			if connectionLost(conn, err) {
				return d, fmt.Errorf("pin the session's semantics: %w", err)
			}
			return d, &Error{Dialect: d, Reason: fmt.Sprintf("the session cannot set %s: %v", strings.Join(d.Pinned, ", "), err)}
		}
	}
	probes, err := check(ctx, conn)
	if err != nil {
		return d, err
	}
	more, err := probeTransactions(ctx, conn)
	if err != nil {
		return d, err
	}
	d.Probes = append(probes, more...)
	if wrong := failedProbes(d.Probes); wrong != "" {
		return d, &Error{Dialect: d, Reason: wrong}
	}
	conn.CustomData()[customDataKey] = d
	return d, nil
}

// failedProbes says which probes failed, what was found and what to change ("" when none).
func failedProbes(probes []Probe) string {
	var wrong, fixes []string
	for _, p := range probes {
		if !p.OK {
			wrong = append(wrong, p.Found)
			fixes = append(fixes, probeFixes[p.Name])
		}
	}
	if len(wrong) == 0 {
		return ""
	}
	return "in its sessions " + strings.Join(wrong, ", ") + " (set " + strings.Join(fixes, "; ") + ")"
}

// connectionLost reports an error of the connection rather than of the SQL: retryable, and
// never a verdict on the session's semantics.
func connectionLost(conn *pgconn.PgConn, err error) bool {
	return pgconn.SafeToRetry(err) || conn.IsClosed()
}

// check runs one query whose answers differ under Oracle semantics: one probe each for case,
// empty strings, date and the search path.
func check(ctx context.Context, conn *pgconn.PgConn) ([]Probe, error) {
	res, err := conn.Exec(ctx, `SELECT 1 AS "skein_case", ''::pg_catalog.text IS NULL,
	pg_catalog.pg_typeof(CAST('2000-01-02' AS date))::pg_catalog.oid = 1082,
	(pg_catalog.current_schemas(true))[1] OPERATOR(pg_catalog.=) 'pg_catalog' OR (pg_catalog.current_schemas(true))[1] OPERATOR(pg_catalog.~) '^pg_temp'`).ReadAll()
	if err != nil {
		if connectionLost(conn, err) {
			return nil, fmt.Errorf("check the session's semantics: %w", err)
		}
		return []Probe{{Name: probeCase, Found: fmt.Sprintf("checking its semantics failed: %v", err)}}, nil
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 4 {
		return []Probe{{Name: probeCase, Found: "checking its semantics returned no answer"}}, nil
	}
	row := res[0].Rows[0]
	probes := []Probe{{Name: probeCase, OK: true}, {Name: probeEmpty, OK: true}, {Name: probeDate, OK: true}, {Name: probePath, OK: true}}
	if name := string(res[0].FieldDescriptions[0].Name); name != "skein_case" {
		probes[0] = Probe{Name: probeCase, Found: fmt.Sprintf("a quoted lower-case name is read as %q", name)}
	}
	if string(row[1]) != "f" {
		probes[1] = Probe{Name: probeEmpty, Found: "an empty string is read as NULL"}
	}
	if string(row[2]) != "t" {
		probes[2] = Probe{Name: probeDate, Found: "date is not PostgreSQL's date"}
	}
	if string(row[3]) != "t" {
		probes[3] = Probe{Name: probePath, Found: "a schema is searched before pg_catalog"}
	}
	return probes, nil
}

// probeTransactions checks the two transaction behaviours Skein's exactly-once apply relies on,
// by doing what they are about (in a temporary table, rolled back; three round trips, once per
// session):
//   - a DDL statement inside a transaction that is rolled back leaves nothing behind (no implicit
//     commit: a schema change and the LSN recorded with it commit together);
//   - after a failed statement the next one in the same transaction fails with 25P02 (no
//     statement-level rollback: a failed batch or upsert aborts its whole transaction).
func probeTransactions(ctx context.Context, conn *pgconn.PgConn) ([]Probe, error) {
	lost := func(what string, err error) error { return fmt.Errorf("probe the session's %s: %w", what, err) }
	ddl := Probe{Name: probeDDL, OK: true}
	res, err := conn.Exec(ctx, `BEGIN; CREATE TEMPORARY TABLE skein_probe_ddl (x integer); ROLLBACK;
SELECT pg_catalog.to_regclass('pg_temp.skein_probe_ddl') IS NULL; DROP TABLE IF EXISTS pg_temp.skein_probe_ddl`).ReadAll()
	switch {
	case err != nil && connectionLost(conn, err):
		return nil, lost("transactions", err)
	case err != nil:
		ddl = Probe{Name: probeDDL, Found: fmt.Sprintf("a DDL statement in a transaction failed: %v", err)}
		if _, rerr := conn.Exec(ctx, "ROLLBACK").ReadAll(); rerr != nil && connectionLost(conn, rerr) {
			return nil, lost("transactions", rerr)
		}
	case len(res) < 4 || len(res[3].Rows) != 1 || string(res[3].Rows[0][0]) != "t":
		ddl = Probe{Name: probeDDL, Found: "a DDL statement committed the open transaction (a table created in a transaction that was rolled back is there)"}
	}

	abort := Probe{Name: probeStmtRoll, OK: true}
	_, err = conn.Exec(ctx, `BEGIN; SELECT 1 / 0`).ReadAll()
	if err != nil && connectionLost(conn, err) {
		return nil, lost("transactions", err)
	}
	_, err = conn.Exec(ctx, `SELECT 1`).ReadAll()
	var pgErr *pgconn.PgError
	switch {
	case err != nil && connectionLost(conn, err):
		return nil, lost("transactions", err)
	case err == nil:
		abort = Probe{Name: probeStmtRoll, Found: "a statement after a failed one in the same transaction succeeded (statement-level rollback)"}
	case !errors.As(err, &pgErr) || pgErr.Code != "25P02":
		abort = Probe{Name: probeStmtRoll, Found: fmt.Sprintf("a statement after a failed one in the same transaction failed with %v, not 25P02", err)}
	}
	if _, err := conn.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		if connectionLost(conn, err) {
			return nil, lost("transactions", err)
		}
		return nil, fmt.Errorf("probe the session's transactions: ROLLBACK: %w", err)
	}
	return []Probe{ddl, abort}, nil
}

// FoldsCase reports whether the destination resolves names without regard to case in a pinned
// session (PolarDB-O can: "ORDERS", "orders" and orders then name one table), by creating two
// temporary tables whose names differ only in case inside a transaction that is rolled back.
func FoldsCase(ctx context.Context, conn *pgconn.PgConn) (bool, error) {
	_, err := conn.Exec(ctx, `BEGIN; CREATE TEMPORARY TABLE "skein_fold_probe" (x integer); CREATE TEMPORARY TABLE "SKEIN_FOLD_PROBE" (x integer)`).ReadAll()
	var pgErr *pgconn.PgError
	folds := errors.As(err, &pgErr) && pgErr.Code == "42P07" // duplicate table
	if err != nil && !folds {
		if _, rerr := conn.Exec(ctx, "ROLLBACK").ReadAll(); rerr != nil && connectionLost(conn, rerr) {
			return false, rerr
		}
		return false, fmt.Errorf("probe whether names fold case: %w", err)
	}
	if _, err := conn.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		return false, fmt.Errorf("probe whether names fold case: ROLLBACK: %w", err)
	}
	return folds, nil
}
