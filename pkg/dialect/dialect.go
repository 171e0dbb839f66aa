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
	// PolarDB for PostgreSQL (Compatible with Oracle).
	{Name: "polar_compatibility_mode", Product: "PolarDB", ReportOnly: true},
	{Name: "polar_comp_redwood_date", PG: "off", Product: "PolarDB"},
	{Name: "polar_comp_redwood_strings", PG: "off", Product: "PolarDB"},
	{Name: "polar_comp_redwood_greatest_least", PG: "off", Product: "PolarDB"},
	{Name: "polar_comp_stmt_level_tx", PG: "off", Product: "PolarDB"},
	{Name: "polar_comp_redwood_raw_names", Product: "PolarDB", ReportOnly: true},
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
}

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
	wrong, err := check(ctx, conn)
	if err != nil {
		return d, err
	}
	if wrong != "" {
		return d, &Error{Dialect: d, Reason: wrong}
	}
	conn.CustomData()[customDataKey] = d
	return d, nil
}

// connectionLost reports an error of the connection rather than of the SQL: retryable, and
// never a verdict on the session's semantics.
func connectionLost(conn *pgconn.PgConn, err error) bool {
	return pgconn.SafeToRetry(err) || conn.IsClosed()
}

// check runs one query whose answers differ under Oracle semantics and says what differs ("" when
// nothing does).
func check(ctx context.Context, conn *pgconn.PgConn) (string, error) {
	res, err := conn.Exec(ctx, `SELECT 1 AS "skein_case", ''::pg_catalog.text IS NULL,
	pg_catalog.pg_typeof(CAST('2000-01-02' AS date))::pg_catalog.oid = 1082,
	(pg_catalog.current_schemas(true))[1] OPERATOR(pg_catalog.=) 'pg_catalog' OR (pg_catalog.current_schemas(true))[1] OPERATOR(pg_catalog.~) '^pg_temp'`).ReadAll()
	if err != nil {
		if connectionLost(conn, err) {
			return "", fmt.Errorf("check the session's semantics: %w", err)
		}
		return fmt.Sprintf("checking its semantics failed: %v", err), nil
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 4 {
		return "checking its semantics returned no answer", nil
	}
	var wrong []string
	if name := string(res[0].FieldDescriptions[0].Name); name != "skein_case" {
		wrong = append(wrong, fmt.Sprintf("a quoted lower-case name is read as %q", name))
	}
	row := res[0].Rows[0]
	if string(row[1]) != "f" {
		wrong = append(wrong, "an empty string is read as NULL")
	}
	if string(row[2]) != "t" {
		wrong = append(wrong, "date is not PostgreSQL's date")
	}
	if string(row[3]) != "t" {
		wrong = append(wrong, "a schema is searched before pg_catalog")
	}
	if len(wrong) > 0 {
		return "in its sessions " + strings.Join(wrong, ", "), nil
	}
	return "", nil
}
