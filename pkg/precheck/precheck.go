// Package precheck runs the checks a task must pass before anything is created. Every item has a
// stable id, a level, a result, a detail naming the objects concerned and a fix.
package precheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/cdc/source"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/ddlcapture"
	"github.com/skein-dts/skein/pkg/dialect"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
)

// Item is one precheck result (api.Item).
type Item = api.Item

// Levels of an Item.
const (
	Error   = api.Error
	Warning = api.Warning
	Info    = api.Info
)

// Options tune the checks.
type Options struct {
	// LongTransaction is the age from which an open source transaction is reported (default 5m).
	LongTransaction time.Duration
	// Settle is how long the precheck activity checks again while a server cannot be reached
	// or drops its connections (default 30s).
	Settle time.Duration
}

// checker holds what the checks share.
type checker struct {
	s      spec.Spec
	opts   Options
	src    *pgx.Conn
	dst    *pgx.Conn
	tables []spec.TableMap  // the selection, when it resolved
	defs   []*catalog.Table // their definitions, when they loaded
	items  []Item
}

func (c *checker) add(it Item) { c.items = append(c.items, it) }

// fail records a failed item.
func (c *checker) fail(id, level, detail, fix string) {
	c.add(Item{ID: id, Level: level, Detail: detail, Fix: fix})
}

// pass records a passed item.
func (c *checker) pass(id, level, detail string) {
	c.add(Item{ID: id, Level: level, Passed: true, Detail: detail})
}

// Run checks the task. A failed check is an item, never an error. The items depend on the sync
// steps chosen: a full-only task gets no replication checks. transient reports that a server
// could not be reached or dropped a connection during the check (it restarts, the network
// failed): items may have failed for that alone, and a new check may pass.
func Run(ctx context.Context, open dbconn.Opener, s spec.Spec, opts Options) (items []Item, transient bool) {
	if opts.LongTransaction == 0 {
		opts.LongTransaction = 5 * time.Minute
	}
	c := &checker{s: s, opts: opts}
	var err error
	c.src, err = open.Connect(ctx, s.Source)
	transient = errclass.Of(err) == errclass.Connection
	c.connectItem("source_connect", s.Source, err)
	c.dst, err = open.ConnectDestination(ctx, s.Destination)
	transient = transient || errclass.Of(err) == errclass.Connection
	var pinErr *dialect.Error
	if errors.As(err, &pinErr) {
		// Connected, but the session cannot read SQL as PostgreSQL does.
		c.pass("dest_connect", Error, "connected to "+s.Destination.Describe())
		c.fail("dest_compatibility", Error, "destination: "+pinErr.Dialect.String()+"; "+pinErr.Reason,
			"connect to the server's PostgreSQL-mode port, or let the task's user set the parameters named (Skein sets them in each of its sessions)")
	} else {
		c.connectItem("dest_connect", s.Destination, err)
	}
	for _, conn := range []*pgx.Conn{c.src, c.dst} {
		if conn != nil {
			defer conn.Close(context.WithoutCancel(ctx))
		}
	}
	c.sourceDBName()
	if c.src != nil {
		c.version(ctx, "source_version", c.src, 100000, "PostgreSQL 10 or newer (logical replication with pgoutput)")
		if s.IncrementalSync() {
			c.walLevel(ctx)
			c.replicationCapacity(ctx)
			c.ddlCapture(ctx)
		}
		c.resolve(ctx)
		c.rowFilters(ctx)
		c.sourcePrivileges(ctx)
		c.unsupportedTables(ctx)
		if c.defs != nil {
			if s.IncrementalSync() {
				c.primaryKeys()
				c.replicaIdentity()
				c.unloggedTables()
			}
			if s.SchemaSync() {
				c.sequencesSelected()
				c.fkParentsSelected()
			}
		}
		c.longTransactions(ctx)
		c.sourceSize(ctx)
	}
	if c.dst != nil {
		c.version(ctx, "dest_version", c.dst, 120000, "PostgreSQL 12 or newer, or a compatible server")
		c.destPrivileges(ctx)
		if c.tables != nil {
			c.destSchemas(ctx)
			c.conflictingTables(ctx)
		}
		if s.IncrementalSync() {
			c.replicaRole(ctx)
		}
		if c.defs != nil && c.src != nil && s.SchemaSync() {
			c.destExtensions(ctx)
			c.destLibraries(ctx)
			c.destFeatures(ctx)
		}
		if c.defs != nil && c.src != nil {
			c.destCapabilities(ctx)
		}
		c.destCompatibility(dialect.Of(c.dst.PgConn()))
	}
	// A connection that broke during a check is closed by pgx.
	for _, conn := range []*pgx.Conn{c.src, c.dst} {
		transient = transient || conn != nil && conn.IsClosed()
	}
	return c.items, transient
}

func (c *checker) connectItem(id string, ep spec.Endpoint, err error) {
	if err != nil {
		c.fail(id, Error, err.Error(), "check host, port, database, user, the password secret and pg_hba.conf; the worker must reach "+ep.Describe())
		return
	}
	c.pass(id, Error, "connected to "+ep.Describe())
}

func (c *checker) sourceDBName() {
	if strings.Contains(c.s.Source.Database, "-") {
		c.fail("source_db_name", Error, fmt.Sprintf("source database %q contains '-'", c.s.Source.Database),
			"rename the database: ALTER DATABASE \"old-name\" RENAME TO old_name")
		return
	}
	c.pass("source_db_name", Error, fmt.Sprintf("source database %q", c.s.Source.Database))
}

// VersionItem judges a server version number against a minimum.
func VersionItem(id string, num int, text string, min int, need string) Item {
	if num < min {
		return Item{ID: id, Level: Error, Detail: fmt.Sprintf("%s (version %d) is too old", text, num), Fix: "upgrade: Skein needs " + need}
	}
	return Item{ID: id, Level: Error, Passed: true, Detail: text}
}

func (c *checker) version(ctx context.Context, id string, conn *pgx.Conn, min int, need string) {
	var num int
	var text string
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('server_version_num')::int, pg_catalog.version()`).Scan(&num, &text); err != nil {
		c.fail(id, Error, err.Error(), "")
		return
	}
	c.add(VersionItem(id, num, text, min, need))
}

func (c *checker) walLevel(ctx context.Context) {
	var level string
	if err := c.src.QueryRow(ctx, `SELECT pg_catalog.current_setting('wal_level')`).Scan(&level); err != nil {
		c.fail("wal_level", Error, err.Error(), "")
		return
	}
	if level != "logical" {
		c.fail("wal_level", Error, "wal_level is "+level+"; incremental sync needs logical",
			"ALTER SYSTEM SET wal_level = logical; then restart the source server")
		return
	}
	c.pass("wal_level", Error, "wal_level is logical")
}

func (c *checker) replicationCapacity(ctx context.Context) {
	var maxSlots, usedSlots, maxSenders, usedSenders int
	err := c.src.QueryRow(ctx, `SELECT pg_catalog.current_setting('max_replication_slots')::int,
  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name <> $1),
  pg_catalog.current_setting('max_wal_senders')::int,
  (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender')`, c.s.SlotName()).Scan(&maxSlots, &usedSlots, &maxSenders, &usedSenders)
	if err != nil {
		c.fail("replication_slots", Error, err.Error(), "")
		return
	}
	// The task needs one slot, and one walsender at a time (the snapshot holder, then apply).
	if err := source.CheckOwner(ctx, c.src, c.s.SlotName(), source.Owner(c.s.Name)); err != nil {
		c.fail("replication_slots", Error, err.Error(), "start the task under a name that no other task's name equals after replacing '-' with '_'")
	} else if maxSlots < usedSlots+1 {
		c.fail("replication_slots", Error, fmt.Sprintf("max_replication_slots is %d and %d slots exist: no slot is free", maxSlots, usedSlots),
			fmt.Sprintf("ALTER SYSTEM SET max_replication_slots = %d; then restart the source (or drop unused slots)", usedSlots+2))
	} else {
		c.pass("replication_slots", Error, fmt.Sprintf("max_replication_slots %d, %d in use", maxSlots, usedSlots))
	}
	if maxSenders < usedSenders+1 {
		c.fail("wal_senders", Error, fmt.Sprintf("max_wal_senders is %d and %d are in use: none is free", maxSenders, usedSenders),
			fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d; then restart the source", usedSenders+2))
	} else {
		c.pass("wal_senders", Error, fmt.Sprintf("max_wal_senders %d, %d in use", maxSenders, usedSenders))
	}
}

func (c *checker) resolve(ctx context.Context) {
	existing, err := catalog.ListTables(ctx, c.src)
	if err != nil {
		c.fail("objects_exist", Error, err.Error(), "")
		return
	}
	// Missing tables fail this item; the other items still check the tables that exist, so that
	// one run reports every problem.
	tables, missing := spec.Resolve(c.s.Objects, existing)
	tables, err = catalog.AddPartitions(ctx, c.src, c.s.Objects, tables)
	if err != nil {
		c.fail("objects_exist", Error, err.Error(), "")
		return
	}
	c.tables = tables
	tx, err := catalog.BeginRead(ctx, c.src, "")
	if err == nil {
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
		c.defs, err = catalog.LoadTables(ctx, tx, c.tables)
	}
	switch {
	case missing != nil:
		c.fail("objects_exist", Error, missing.Error(), "correct the objects list, or create the missing schemas and tables on the source; the other items checked the tables that exist")
	case err != nil:
		// The items that need the tables' definitions cannot run: said here, not lost.
		c.fail("objects_exist", Error, "reading the selected tables' definitions failed: "+err.Error(), "")
	default:
		c.pass("objects_exist", Error, fmt.Sprintf("%d tables selected", len(c.tables)))
	}
}

func (c *checker) sourcePrivileges(ctx context.Context) {
	var super, repl bool
	if err := c.src.QueryRow(ctx, `SELECT rolsuper, rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&super, &repl); err != nil {
		c.fail("source_privileges", Error, err.Error(), "")
		return
	}
	if super {
		c.pass("source_privileges", Error, "the source account is a superuser")
		return
	}
	var problems []string
	if c.s.IncrementalSync() && !repl {
		problems = append(problems, "no REPLICATION attribute")
	}
	var noSelect, notOwner []string
	rows, err := c.src.Query(ctx, `SELECT u.i::int8, pg_catalog.has_table_privilege(c.oid, 'SELECT'), pg_catalog.pg_has_role(c.relowner, 'USAGE')
FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY u(t, i)
JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(u.t)
ORDER BY 1`, quotedNames(c.tables, false))
	if err == nil {
		var i int64
		var canSelect, owns bool
		_, err = pgx.ForEachRow(rows, []any{&i, &canSelect, &owns}, func() error {
			if !canSelect {
				noSelect = append(noSelect, c.tables[i-1].Source.String())
			}
			if !owns {
				notOwner = append(notOwner, c.tables[i-1].Source.String())
			}
			return nil
		})
	}
	if err != nil {
		c.fail("source_privileges", Error, err.Error(), "")
		return
	}
	if len(noSelect) > 0 {
		problems = append(problems, "no SELECT on "+strings.Join(noSelect, ", "))
	}
	if c.s.IncrementalSync() && len(notOwner) > 0 {
		problems = append(problems, "not the owner of "+strings.Join(notOwner, ", ")+" (needed to add them to the publication)")
	}
	if len(problems) > 0 {
		c.fail("source_privileges", Error, "the source account has "+strings.Join(problems, "; "),
			"ALTER ROLE <user> REPLICATION; GRANT SELECT ON <tables> TO <user>; make <user> the tables' owner (or a member of the owning role), or use a superuser")
		return
	}
	c.pass("source_privileges", Error, "the source account can replicate and read the selected tables (not a superuser: see ddl_capture)")
}

// ddlCapture checks that schema changes on the source can be captured while the task streams:
// event triggers need a superuser, and pgoutput delivers their messages from PostgreSQL 14 on.
func (c *checker) ddlCapture(ctx context.Context) {
	const fix = "use a superuser for the source (PostgreSQL 10 or newer), or list ddl_capture in ignore_precheck: schema changes are then not replicated, and a change that touches the selection stops the task"
	var super bool
	if err := c.src.QueryRow(ctx, `SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		c.fail("ddl_capture", Warning, err.Error(), "")
		return
	}
	switch {
	case slices.Contains(c.s.IgnorePrecheck, "ddl_capture"):
		c.pass("ddl_capture", Warning, "ignored: schema changes on the source are not captured; one that touches the selection stops the task")
	case !ddlcapture.Supported(c.src):
		c.fail("ddl_capture", Warning, "the source is older than PostgreSQL 10: schema changes are not replicated", fix)
	case !super:
		c.fail("ddl_capture", Warning, "the source account is not a superuser, which event triggers need: schema changes are not replicated", fix)
	default:
		how := "logical messages"
		if !ddlcapture.Messages(c.src) {
			how = "rows of " + ddlcapture.EventsTable(c.s.SlotName()).String() + " in the publication (the source is older than 14, whose pgoutput has no logical messages)"
		}
		c.pass("ddl_capture", Warning, "schema changes on the source are captured by event triggers "+pgx.Identifier{"skein_ddl_" + c.s.SlotName()}.Sanitize()+", sent as "+how+", and applied in the stream")
	}
}

func (c *checker) primaryKeys() {
	var without []string
	for _, t := range c.defs {
		if t.Key() == nil {
			without = append(without, t.Name.String())
		}
	}
	if len(without) > 0 {
		c.fail("primary_keys", Warning, "tables without a primary key or non-null unique key: "+strings.Join(without, ", ")+
			" (their updates and deletes are matched on every column, which is slow, and duplicate rows are indistinguishable)",
			"add a primary key to each (ALTER TABLE ... ADD PRIMARY KEY (...)), or list primary_keys in ignore_precheck")
		return
	}
	c.pass("primary_keys", Warning, "every selected table has a primary key or a non-null unique key")
}

// NeedsFullIdentity reports whether t must get REPLICA IDENTITY FULL for its updates and deletes
// to be replicated: it has no usable key and its identity is not FULL already.
func NeedsFullIdentity(t *catalog.Table) bool {
	switch t.ReplicaIdentity {
	case "f":
		return false
	case "i":
		return false
	case "d":
		return t.PrimaryKey() == nil
	}
	return true // "n": nothing
}

func (c *checker) replicaIdentity() {
	var need []string
	for i, t := range c.defs {
		if NeedsFullIdentity(t) || (c.tables[i].Where != "" && t.ReplicaIdentity != "f") {
			need = append(need, t.Name.String())
		}
	}
	if len(need) == 0 {
		c.pass("replica_identity", Warning, "every selected table has a usable replica identity")
		return
	}
	detail := "Skein sets REPLICA IDENTITY FULL during initialization, and gives each table its identity back at release, on: " + strings.Join(need, ", ")
	if slices.Contains(c.s.IgnorePrecheck, "replica_identity") {
		detail = "ignored: Skein leaves the replica identity alone; updates and deletes of these tables will fail on the source once they are published: " + strings.Join(need, ", ")
	}
	c.add(Item{ID: "replica_identity", Level: Warning, Passed: true, Detail: detail,
		Fix: "or set it yourself: ALTER TABLE <table> REPLICA IDENTITY FULL (or add a primary key); a table with a row filter needs FULL, so that the filter is evaluated on the old row of its updates and deletes"})
}

// unloggedTables warns of selected unlogged tables: they write no WAL, so a publication cannot
// hold them and their changes cannot stream. Skein creates and loads them and leaves them out of
// the publication; status notes them.
func (c *checker) unloggedTables() {
	var unlogged []string
	for _, t := range c.defs {
		if t.Unlogged {
			unlogged = append(unlogged, t.Name.String())
		}
	}
	if len(unlogged) == 0 {
		c.pass("unlogged_tables", Warning, "no unlogged table is selected")
		return
	}
	c.fail("unlogged_tables", Warning, "unlogged tables write no WAL, so their changes cannot stream: Skein creates and loads them, and their later changes are not replicated: "+strings.Join(unlogged, ", "),
		"ALTER TABLE <table> SET LOGGED on the source to stream it, exclude it (exclude_tables), or list unlogged_tables in ignore_precheck to load it once")
}

// rowFilters checks each table's where filter on the source: one expression over its columns,
// and, for a task with incremental sync, a source whose publications filter rows (PostgreSQL 15+).
func (c *checker) rowFilters(ctx context.Context) {
	var filtered []spec.TableMap
	for _, tm := range c.tables {
		if tm.Where != "" {
			filtered = append(filtered, tm)
		}
	}
	if len(filtered) == 0 {
		c.pass("row_filters", Error, "no row filters")
		return
	}
	var problems []string
	var num int
	if err := c.src.QueryRow(ctx, `SELECT pg_catalog.current_setting('server_version_num')::int`).Scan(&num); err != nil {
		c.fail("row_filters", Error, "read the source's version: "+err.Error(), "")
		return
	}
	if c.s.IncrementalSync() && num < 150000 {
		problems = append(problems, fmt.Sprintf("row filters on the change stream need publication row filters: a source on PostgreSQL 15 or newer (this one is %d)", num))
	}
	for _, tm := range filtered {
		if err := checkFilter(ctx, c.src, tm, num); err != nil {
			problems = append(problems, fmt.Sprintf("%s where %q: %v", tm.Source, tm.Where, err))
		}
	}
	if len(problems) > 0 {
		c.fail("row_filters", Error, strings.Join(problems, "; "),
			"write each where as one boolean SQL expression over the source table's columns, e.g. region = 'eu'")
		return
	}
	c.pass("row_filters", Error, fmt.Sprintf("%d row filters are valid expressions", len(filtered)))
}

// checkFilter checks a row filter on the source, for every task (full-only ones too), as
// PostgreSQL 15+ checks publication row filters: only the table's columns, immutable built-in
// functions and operators, no subqueries, user-defined functions or system columns. A source on
// 15+ judges it itself (publicationFilterCheck); an older one by Skein's reading of the parsed
// filter (ruleFilterCheck). Then it plans the filter in a read-only transaction: a bad
// expression fails, and nothing it names runs. version is the source's server_version_num.
func checkFilter(ctx context.Context, conn *pgx.Conn, tm spec.TableMap, version int) error {
	judge := publicationFilterCheck
	if version < 150000 {
		judge = ruleFilterCheck
	}
	if err := judge(ctx, conn, tm); err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	_, err = tx.Exec(ctx, "EXPLAIN SELECT 1 FROM "+tm.Source.Quoted()+" WHERE "+tm.WhereSQL())
	return err
}

// publicationFilterCheck creates, and rolls back, a publication with the filter (PostgreSQL 15+).
// An account that may not create publications gets Skein's own check (ruleFilterCheck).
func publicationFilterCheck(ctx context.Context, conn *pgx.Conn, tm spec.TableMap) error {
	err := rolledBack(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "CREATE PUBLICATION skein_filter_check FOR TABLE "+tm.Source.Quoted()+" WHERE "+tm.WhereSQL())
		return err
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return ruleFilterCheck(ctx, conn, tm)
	case errors.As(err, &pgErr) && pgErr.Detail != "":
		return fmt.Errorf("%s: %s", pgErr.Message, pgErr.Detail) // the DETAIL says what is not allowed
	}
	return err
}

// sequencesSelected reports the sequences that column defaults use without owning them (laid out
// by hand or restored from older dumps, or a partition's columns using its parent's): schema sync
// creates them with the tables and sets them at post-data and cutover, as the owned ones.
func (c *checker) sequencesSelected() {
	var standalone []string
	for _, t := range c.defs {
		if t.PartitionOf != nil {
			continue // its columns use its parent's sequences
		}
		for _, col := range t.Columns {
			if col.OwnedSequence == nil && col.Identity == "" && strings.Contains(col.Default, "nextval(") {
				standalone = append(standalone, fmt.Sprintf("%s.%s (%s)", t.Name, col.Name, col.Default))
			}
		}
	}
	detail := "every sequence the selected tables use is owned by its column and comes with its table"
	if len(standalone) > 0 {
		detail = "sequences that columns use without owning them are created on the destination too, and set at post-data and cutover: " + strings.Join(standalone, "; ")
	}
	c.pass("sequences_selected", Error, detail)
}

func (c *checker) fkParentsSelected() {
	selected := map[spec.QName]bool{}
	for _, tm := range c.tables {
		selected[tm.Source] = true
	}
	var missing []string
	for _, t := range c.defs {
		for _, con := range t.Constraints {
			if con.Kind == "f" && !selected[con.RefTable] {
				missing = append(missing, fmt.Sprintf("%s -> %s (%s)", t.Name, con.RefTable, con.Name))
			}
		}
	}
	if len(missing) > 0 {
		c.fail("fk_parents_selected", Warning, "foreign keys reference tables that are not selected; they are not created on the destination: "+strings.Join(missing, "; "),
			"select the referenced tables too, or list fk_parents_selected in ignore_precheck")
		return
	}
	c.pass("fk_parents_selected", Warning, "every referenced table is selected")
}

func (c *checker) unsupportedTables(ctx context.Context) {
	found, err := queryStrings(ctx, c.src, `
SELECT pg_catalog.format('%s.%s', n.nspname, c.relname) || ': ' ||
       'inherits from ' || pn.nspname || '.' || p.relname || ' in another schema'
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
LEFT JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
WHERE n.nspname = ANY($1) AND c.relkind = 'r' AND NOT c.relispartition AND p.oid IS NOT NULL AND pn.nspname <> n.nspname
ORDER BY 1`, c.selectedSchemas())
	if err != nil {
		c.fail("unsupported_tables", Error, err.Error(), "")
		return
	}
	var hyper bool
	if err := c.src.QueryRow(ctx, `SELECT pg_catalog.to_regclass('_timescaledb_catalog.hypertable') IS NOT NULL`).Scan(&hyper); err == nil && hyper {
		more, _ := queryStrings(ctx, c.src, `SELECT schema_name || '.' || table_name || ': TimescaleDB hypertable' FROM _timescaledb_catalog.hypertable WHERE schema_name = ANY($1)`, c.selectedSchemas())
		found = append(found, more...)
	}
	if len(found) > 0 {
		c.fail("unsupported_tables", Error, "tables in the selection that Skein cannot synchronize: "+strings.Join(found, "; "),
			"exclude them (exclude_tables) or list tables explicitly")
		return
	}
	c.pass("unsupported_tables", Error, "no hypertable or cross-schema inheritance in the selection")
}

func (c *checker) selectedSchemas() []string {
	out := make([]string, len(c.s.Objects))
	for i, o := range c.s.Objects {
		out[i] = o.Schema
	}
	return out
}

func (c *checker) longTransactions(ctx context.Context) {
	open, err := queryStrings(ctx, c.src, `
SELECT pg_catalog.format('pid %s (%s, %s, open %s)', pid, usename, datname, date_trunc('second', pg_catalog.now() - xact_start))
FROM pg_catalog.pg_stat_activity
WHERE xact_start < pg_catalog.now() - $1::pg_catalog.interval AND pid <> pg_catalog.pg_backend_pid()
ORDER BY xact_start`, fmt.Sprintf("%d milliseconds", c.opts.LongTransaction.Milliseconds()))
	if err != nil {
		c.fail("long_transactions", Warning, err.Error(), "")
		return
	}
	if len(open) > 0 {
		c.fail("long_transactions", Warning, fmt.Sprintf("transactions open longer than %s on the source delay the creation of the replication slot until they end: %s",
			c.opts.LongTransaction, strings.Join(open, "; ")),
			"end them (SELECT pg_terminate_backend(<pid>)) or wait, or list long_transactions in ignore_precheck")
		return
	}
	c.pass("long_transactions", Warning, "no long-running transaction on the source")
}

func (c *checker) sourceSize(ctx context.Context) {
	var total int64
	_ = c.src.QueryRow(ctx, `SELECT COALESCE(sum(pg_catalog.pg_total_relation_size(pg_catalog.to_regclass(t))), 0)::int8
FROM pg_catalog.unnest($1::pg_catalog.text[]) t`, quotedNames(c.tables, false)).Scan(&total) // an estimate: 0 if unreadable
	c.add(Item{ID: "source_size", Level: Info, Passed: true,
		Detail: fmt.Sprintf("the selected tables take %s on the source (with indexes and TOAST)", humanize.IBytes(uint64(total))),
		Fix:    "the destination needs more free space than that, for the data, its indexes and WAL"})
}

func (c *checker) destPrivileges(ctx context.Context) {
	var canCreate bool
	if err := c.dst.QueryRow(ctx, `SELECT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')`).Scan(&canCreate); err != nil {
		c.fail("dest_privileges", Error, err.Error(), "")
		return
	}
	if !canCreate {
		c.fail("dest_privileges", Error, fmt.Sprintf("the destination account cannot create schemas in database %q (Skein needs its bookkeeping schema \"skein\" and the target schemas)", c.s.Destination.Database),
			fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", quote(c.s.Destination.Database), quote(c.s.Destination.User)))
		return
	}
	c.pass("dest_privileges", Error, "the destination account can create schemas")
}

func (c *checker) destSchemas(ctx context.Context) {
	seen := map[string]bool{}
	var problems []string
	for _, tm := range c.tables {
		schema := tm.Dest.Schema
		if seen[schema] {
			continue
		}
		seen[schema] = true
		var exists, canCreate, dbCreate bool
		err := c.dst.QueryRow(ctx, `SELECT n.oid IS NOT NULL, COALESCE(pg_catalog.has_schema_privilege(n.oid, 'CREATE'), false),
  pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')
FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1`, schema).Scan(&exists, &canCreate, &dbCreate)
		switch {
		case err != nil:
			problems = append(problems, schema+": "+err.Error())
		case exists && !canCreate:
			problems = append(problems, fmt.Sprintf("schema %q exists and the account cannot create in it", schema))
		case !exists && !dbCreate:
			problems = append(problems, fmt.Sprintf("schema %q does not exist and the account cannot create it", schema))
		}
	}
	if len(problems) > 0 {
		c.fail("dest_schemas", Error, strings.Join(problems, "; "),
			fmt.Sprintf("GRANT CREATE ON SCHEMA <schema> TO %s, or create the schemas with that account as owner", quote(c.s.Destination.User)))
		return
	}
	c.pass("dest_schemas", Error, "the destination schemas exist or can be created")
}

func (c *checker) conflictingTables(ctx context.Context) {
	var conflicts []string
	rows, err := c.dst.Query(ctx, `SELECT u.i::int8 FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY u(t, i)
WHERE pg_catalog.to_regclass(u.t) IS NOT NULL ORDER BY 1`, quotedNames(c.tables, true))
	if err == nil {
		var i int64
		_, err = pgx.ForEachRow(rows, []any{&i}, func() error {
			conflicts = append(conflicts, c.tables[i-1].Dest.String())
			return nil
		})
	}
	if err != nil {
		c.fail("conflicting_tables", Error, err.Error(), "")
		return
	}
	level := Error
	if c.s.ConflictMode == spec.ConflictIgnore {
		level = Warning
	}
	if len(conflicts) > 0 && c.s.SchemaSync() {
		c.fail("conflicting_tables", level, "tables already on the destination: "+strings.Join(conflicts, ", "),
			"drop or rename them on the destination, or map the tables to other names (objects[].tables[].to)")
		return
	}
	c.pass("conflicting_tables", level, "no selected table exists on the destination")
}

func (c *checker) replicaRole(ctx context.Context) {
	tx, err := c.dst.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, `SET LOCAL session_replication_role = replica`)
		_ = tx.Rollback(ctx)
	}
	if err != nil {
		c.fail("replica_role_privilege", Error, "the destination account cannot SET session_replication_role = replica: "+err.Error(),
			fmt.Sprintf("on PostgreSQL 15+: GRANT SET ON PARAMETER session_replication_role TO %s; otherwise make the account a superuser (on PolarDB: polar_superuser)", quote(c.s.Destination.User)))
		return
	}
	c.pass("replica_role_privilege", Error, "the destination account can SET session_replication_role = replica")
}

func (c *checker) destExtensions(ctx context.Context) {
	// Extensions of whole schemas, and those owning an object a selected table or view uses (a
	// column type, an operator class, a function), in any schema: Skein creates those that are
	// available on the destination, in their own schema.
	exts, err := catalog.SchemaExtensions(ctx, c.src, c.s.WholeSchemas())
	if err != nil {
		c.fail("dest_extensions", Error, err.Error(), "")
		return
	}
	used, err := catalog.DependentExtensions(ctx, c.src, c.defs, c.s.WholeSchemas())
	if err != nil {
		c.fail("dest_extensions", Error, err.Error(), "")
		return
	}
	var needed, created []string
	for _, e := range append(exts, used...) {
		if !slices.Contains(needed, e.Name.Name) {
			needed = append(needed, e.Name.Name)
		}
	}
	var missing []string
	for _, ext := range needed {
		var installed, available bool
		if err := c.dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = $1),
  EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = $1)`, ext).Scan(&installed, &available); err != nil {
			c.fail("dest_extensions", Error, err.Error(), "")
			return
		}
		switch {
		case !available:
			missing = append(missing, ext+" (not available on the destination server)")
		case !installed:
			created = append(created, ext)
		}
	}
	if len(missing) > 0 {
		c.fail("dest_extensions", Error, "the selection uses extensions missing on the destination: "+strings.Join(missing, ", "),
			"install the extension's package on the destination server (Skein then creates the extension), or CREATE EXTENSION <name> there yourself")
		return
	}
	detail := "no extension needed"
	if len(needed) > 0 {
		detail = "extensions the selected tables need: " + strings.Join(needed, ", ")
	}
	if len(created) > 0 {
		detail += "; Skein creates: " + strings.Join(created, ", ")
	}
	c.pass("dest_extensions", Error, detail)
}

// destCompatibility reports the destination's dialect: the product, the mode its sessions start
// in, the settings found that change what SQL means and what Skein pins in every session
// (dialect.Pin). A session that could not be given PostgreSQL semantics fails the item.
func (c *checker) destCompatibility(d dialect.Dialect) {
	c.pass("dest_compatibility", Error, "destination: "+d.String())
}

// queryStrings runs a query whose rows are one text column.
func queryStrings(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func quote(s string) string { return pgx.Identifier{s}.Sanitize() }

// quotedNames are the tables' quoted source (or, with dest, destination) names, in their order.
func quotedNames(tables []spec.TableMap, dest bool) []string {
	names := make([]string, len(tables))
	for i, tm := range tables {
		names[i] = tm.Source.Quoted()
		if dest {
			names[i] = tm.Dest.Quoted()
		}
	}
	return names
}
