// Package ddlcapture captures schema changes on the source in commit order with the changes
// around them. Event triggers (ddl_command_end, sql_drop), created per task, write a
// transactional logical message into the WAL for every DDL command on a table, index or sequence:
// the command tag, the statement's text and the state after the command of each table it touched
// (columns by attnum, constraints, partitioning), the same shape Skein records for each table when
// it creates it. The change stream (pgoutput with messages, PostgreSQL 14+) delivers the message
// where the command committed, and change apply turns the difference between the recorded and the
// new state into destination DDL (pkg/cdc).
package ddlcapture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/skein-dts/skein/pkg/catalog"
	"github.com/skein-dts/skein/pkg/dbconn"
	"github.com/skein-dts/skein/pkg/sourceschema"
	"github.com/skein-dts/skein/pkg/spec"
)

// Prefix is the logical message prefix of a task's schema-change events (slot: the task's slot
// name): one task's stream never takes another task's events for its own.
func Prefix(slot string) string { return "skein-ddl:" + slot }

// SessionSetting turns capture off in a session that sets it to "off": Skein's own sessions on
// the source (they set REPLICA IDENTITY, change publications) set it at connection start.
const SessionSetting = dbconn.CaptureSetting

// Table is a table's state as the events carry it and as Skein records it per task: columns by
// attnum (a rename keeps the attnum), constraints by name, partitioning.
type Table struct {
	OID         uint32       `json:"oid"`
	Schema      string       `json:"schema"`
	Name        string       `json:"name"`
	Kind        string       `json:"kind"`        // r table, p partitioned table
	Persistence string       `json:"persistence"` // p permanent, u unlogged
	Parent      *spec.QName  `json:"parent"`      // the partitioned table of a partition
	Bound       string       `json:"bound"`       // a partition's FOR VALUES clause
	PartitionBy string       `json:"partition_by"`
	Columns     []Column     `json:"columns"`
	Constraints []Constraint `json:"constraints"`
}

// QName is the table's name.
func (t *Table) QName() spec.QName { return spec.QName{Schema: t.Schema, Name: t.Name} }

// Column is one column of a Table. Type, Default and Generated are deparsed with an empty search
// path: every name outside pg_catalog is qualified.
type Column struct {
	Num       int16  `json:"num"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	NotNull   bool   `json:"not_null"`
	Default   string `json:"default"`
	Identity  string `json:"identity"`  // a ALWAYS, d BY DEFAULT
	Generated string `json:"generated"` // the stored expression
	Collation string `json:"collation"` // qualified, when not the type's default
}

// Constraint is one constraint of a Table, as pg_get_constraintdef writes it.
type Constraint struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // p u f c x
	Def  string `json:"def"`
	// RefTable is the table a foreign key references.
	RefTable *spec.QName `json:"ref_table"`
}

// Column returns the column of attnum num, or nil.
func (t *Table) Column(num int16) *Column {
	for i := range t.Columns {
		if t.Columns[i].Num == num {
			return &t.Columns[i]
		}
	}
	return nil
}

// tableSQL reads a Table as JSON; $1 is its OID. It runs from Go (LoadTable, inside the task's
// snapshot) and inside the capture function, so both record the same shape.
const tableSQL = `
SELECT pg_catalog.jsonb_build_object(
  'oid', c.oid::pg_catalog.int8, 'schema', n.nspname, 'name', c.relname, 'kind', c.relkind, 'persistence', c.relpersistence,
  'parent', (SELECT pg_catalog.jsonb_build_object('schema', pn.nspname, 'name', p.relname)
             FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
             JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition),
  'bound', COALESCE(pg_catalog.pg_get_expr(c.relpartbound, c.oid), ''),
  'partition_by', COALESCE(pg_catalog.pg_get_partkeydef(c.oid), ''),
  'columns', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'num', a.attnum, 'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
      'not_null', a.attnotnull, 'identity', a.attidentity,
      'default', CASE WHEN COALESCE(pg_catalog.to_jsonb(a) ->> 'attgenerated', '') = '' THEN COALESCE(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') ELSE '' END,
      'generated', CASE WHEN COALESCE(pg_catalog.to_jsonb(a) ->> 'attgenerated', '') <> '' THEN COALESCE(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') ELSE '' END,
      'collation', CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
                        THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) ELSE '' END)
      ORDER BY a.attnum)
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
    LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::pg_catalog.jsonb),
  'constraints', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
      'name', k.conname, 'kind', k.contype, 'def', pg_catalog.pg_get_constraintdef(k.oid),
      'ref_table', (SELECT pg_catalog.jsonb_build_object('schema', rn.nspname, 'name', r.relname)
                    FROM pg_catalog.pg_class r JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace WHERE r.oid = k.confrelid))
      ORDER BY k.conname)
    FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'f', 'c', 'x')
      AND COALESCE((pg_catalog.to_jsonb(k) ->> 'conparentid')::pg_catalog.oid, 0) = 0), '[]'::pg_catalog.jsonb))
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1`

// LoadTables reads the states of tables (by OID; a table that does not exist is left out), a
// thousand per query. q must run with an empty search_path (catalog.BeginRead). version is the
// server's server_version_num (0: unknown; see catalog.ForVersion).
func LoadTables(ctx context.Context, q catalog.Querier, oids []uint32, version int) (map[uint32]*Table, error) {
	query := catalog.ForVersion(strings.Replace(tableSQL, "WHERE c.oid = $1", "WHERE c.oid = ANY($1::pg_catalog.oid[])", 1), version)
	out := make(map[uint32]*Table, len(oids))
	for start := 0; start < len(oids); start += 1000 {
		part := oids[start:min(start+1000, len(oids))]
		failed := func(err error) error {
			return fmt.Errorf("read the definitions of tables %d and %d more: %w", part[0], len(part)-1, err)
		}
		rows, err := q.Query(ctx, query, part)
		if err != nil {
			return nil, failed(err)
		}
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&raw); err != nil {
				rows.Close()
				return nil, failed(err)
			}
			var t Table
			if err := json.Unmarshal(raw, &t); err != nil {
				rows.Close()
				return nil, failed(err)
			}
			out[t.OID] = &t
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, failed(err)
		}
	}
	return out, nil
}

// LoadTable reads the state of table oid (nil if it does not exist). q must run with an empty
// search_path (catalog.BeginRead), so that names are qualified as in the events.
func LoadTable(ctx context.Context, q catalog.Querier, oid uint32) (*Table, error) {
	var raw []byte
	err := q.QueryRow(ctx, tableSQL, oid).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the definition of table %d: %w", oid, err)
	}
	var t Table
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("read the definition of table %d: %w", oid, err)
	}
	return &t, nil
}

// Event is one DDL command as the capture function writes it.
type Event struct {
	Tag   string `json:"tag"`   // CREATE TABLE, ALTER TABLE, DROP TABLE, CREATE INDEX...
	Query string `json:"query"` // the statement's text, for the audit trail
	// Tables are the states after the command of the tables it created or altered.
	Tables []Table `json:"tables"`
	// Indexes are the indexes it created (their definitions), Dropped what it dropped.
	Indexes []Index   `json:"indexes"`
	Dropped []Dropped `json:"dropped"`
	// Sequences are the sequences it created or altered.
	Sequences []Sequence `json:"sequences"`
	// Others are the other objects it created or altered (views, functions, types...), which
	// Skein does not replicate while streaming: the stream reports them.
	Others []Other `json:"others"`
	// CaptureError is set when the capture function failed on this command: the change is not
	// known, and the stream stops with the reason.
	CaptureError string `json:"capture_error,omitempty"`
}

// Other is an object of a kind Skein does not replicate while streaming.
type Other struct {
	Type     string `json:"type"`
	Schema   string `json:"schema"`
	Identity string `json:"identity"`
}

// Index is a created index: its table and pg_get_indexdef's text.
type Index struct {
	OID   uint32     `json:"oid"`
	Name  string     `json:"name"`
	Table spec.QName `json:"table"`
	TabID uint32     `json:"table_oid"`
	Def   string     `json:"def"`
	// Constraint: the index of a primary key, unique or exclusion constraint (created with it).
	Constraint bool `json:"constraint"`
}

// Dropped is an object a DROP removed.
type Dropped struct {
	OID    uint32 `json:"oid"`
	Type   string `json:"type"` // table, index, sequence (pg_event_trigger_dropped_objects' object_type)
	Schema string `json:"schema"`
	Name   string `json:"name"`
}

// Sequence is a created or altered sequence.
type Sequence struct {
	OID       uint32 `json:"oid"`
	Schema    string `json:"schema"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	Start     int64  `json:"start"`
	Increment int64  `json:"increment"`
	Min       int64  `json:"min"`
	Max       int64  `json:"max"`
	Cache     int64  `json:"cache"`
	Cycle     bool   `json:"cycle"`
	// OwnedBy: the sequence belongs to a column (SERIAL, identity); Identity: to an identity
	// column, which creates its own.
	OwnedBy  bool `json:"owned_by"`
	Identity bool `json:"identity"`
}

// ParseEvent reads an event message's content.
func ParseEvent(content []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(content, &ev); err != nil {
		return ev, fmt.Errorf("read a schema-change event: %w", err)
	}
	return ev, nil
}

// Names of a task's capture objects on the source (slot: the task's slot name).
func functionName(slot string) string { return "ddl_capture_" + slot }
func endTrigger(slot string) string   { return "skein_ddl_" + slot }
func dropTrigger(slot string) string  { return "skein_drop_" + slot }

// Selection is what the capture function adds to the task's publication by itself: tables
// created in whole schemas (but not those excluded), so that their first rows stream.
type Selection struct {
	Publication string
	Schemas     []string            // selected whole
	Excluded    map[string][]string // schema -> excluded tables
}

// SelectionOf derives the capture's Selection from a spec.
func SelectionOf(s spec.Spec) Selection {
	sel := Selection{Publication: s.SlotName(), Excluded: map[string][]string{}}
	for _, o := range s.Objects {
		if len(o.Tables) == 0 {
			sel.Schemas = append(sel.Schemas, o.Schema)
			sel.Excluded[o.Schema] = o.ExcludeTables
		}
	}
	return sel
}

// Install creates (or replaces) the task's capture function and its two event triggers. It needs
// a superuser (event triggers), and PostgreSQL 14+ on the source for pgoutput to deliver the
// messages.
func Install(ctx context.Context, conn *pgx.Conn, slot string, sel Selection) error {
	var excluded []string
	for schema, names := range sel.Excluded {
		for _, n := range names {
			excluded = append(excluded, schema+"."+n)
		}
	}
	fn := pgx.Identifier{"skein", functionName(slot)}.Sanitize()
	messages := Messages(conn)
	body := fmt.Sprintf(captureBody, catalog.QuoteLiteral(SessionSetting), catalog.QuoteLiteral(Prefix(slot)),
		textArray(sel.Schemas), textArray(excluded), catalog.QuoteLiteral(sel.Publication), catalog.QuoteLiteral(tableSQL),
		emitEvent(slot, messages))
	// A schema Skein creates says so, and goes with the last task's release (Remove); one that
	// was there before is left alone.
	if err := sourceschema.Ensure(ctx, conn); err != nil {
		return fmt.Errorf("install schema-change capture: %w", err)
	}
	var stmts []string
	if !messages {
		// Before 14 the events are rows of a table of their own in the task's publication.
		events := EventsTable(slot).Quoted()
		stmts = append(stmts, "CREATE TABLE IF NOT EXISTS "+events+" (event pg_catalog.text)")
		var member bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
			sel.Publication, EventsTable(slot).Schema, EventsTable(slot).Name).Scan(&member); err != nil {
			return fmt.Errorf("install schema-change capture: %w", err)
		}
		if !member {
			stmts = append(stmts, "ALTER PUBLICATION "+pgx.Identifier{sel.Publication}.Sanitize()+" ADD TABLE "+events)
		}
	}
	stmts = append(stmts, "CREATE OR REPLACE FUNCTION "+fn+"() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS "+dollarQuote(body))
	for _, tr := range []struct{ name, event string }{{endTrigger(slot), "ddl_command_end"}, {dropTrigger(slot), "sql_drop"}} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = $1)`, tr.name).Scan(&exists); err != nil {
			return fmt.Errorf("install schema-change capture: %w", err)
		}
		if !exists {
			// (EXECUTE PROCEDURE: EXECUTE FUNCTION is 11+.)
			stmts = append(stmts, fmt.Sprintf("CREATE EVENT TRIGGER %s ON %s EXECUTE PROCEDURE %s()", pgx.Identifier{tr.name}.Sanitize(), tr.event, fn))
		}
	}
	for _, st := range stmts {
		if _, err := conn.Exec(ctx, st); err != nil {
			return fmt.Errorf("install schema-change capture: %w", err)
		}
	}
	return nil
}

// Remove drops the task's event triggers and capture function, if they exist.
func Remove(ctx context.Context, conn *pgx.Conn, slot string) error {
	for _, st := range []string{
		"DROP EVENT TRIGGER IF EXISTS " + pgx.Identifier{endTrigger(slot)}.Sanitize(),
		"DROP EVENT TRIGGER IF EXISTS " + pgx.Identifier{dropTrigger(slot)}.Sanitize(),
		"DROP FUNCTION IF EXISTS " + pgx.Identifier{"skein", functionName(slot)}.Sanitize() + "()",
		"DROP TABLE IF EXISTS " + EventsTable(slot).Quoted(),
	} {
		if _, err := conn.Exec(ctx, st); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "3F000" { // no schema skein: nothing to remove
				continue
			}
			return fmt.Errorf("remove schema-change capture: %w", err)
		}
	}
	return sourceschema.DropIfLast(ctx, conn)
}

// Supported reports whether the source can capture schema changes: event triggers with
// pg_event_trigger_ddl_commands, in every version Skein reads (10+).
func Supported(conn *pgx.Conn) bool { return major(conn) >= 10 }

// Messages reports whether the source's pgoutput delivers the events as logical messages (14+);
// before, they are rows of the task's EventsTable, which its publication holds.
func Messages(conn *pgx.Conn) bool { return major(conn) >= 14 }

// EventsTable is where a source older than 14 writes a task's events (slot: its slot name): one
// row each, in the transaction of the command, streamed with the task's tables.
func EventsTable(slot string) spec.QName {
	return spec.QName{Schema: sourceschema.Name, Name: "ddl_events_" + slot}
}

// emitEvent is the capture function's statement writing the event ev.
func emitEvent(slot string, messages bool) string {
	if messages {
		return "PERFORM pg_catalog.pg_logical_emit_message(true, " + catalog.QuoteLiteral(Prefix(slot)) + ", ev::pg_catalog.text);"
	}
	return "INSERT INTO " + EventsTable(slot).Quoted() + " (event) VALUES (ev::pg_catalog.text);"
}

// major is the server's major version (0 when it does not say).
func major(conn *pgx.Conn) int {
	v := conn.PgConn().ParameterStatus("server_version")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end > 0 {
		v = v[:end]
	}
	n := 0
	fmt.Sscan(v, &n) //nolint:errcheck // 0 when unreadable
	return n
}

// IsInstalled reports whether the task's capture triggers exist (the stream then applies the
// events; a task started before capture existed has none).
func IsInstalled(ctx context.Context, conn *pgx.Conn, slot string) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = $1 AND evtenabled <> 'D')`, endTrigger(slot)).Scan(&ok); err != nil {
		return false, fmt.Errorf("look for the schema-change capture: %w", err)
	}
	return ok, nil
}

func textArray(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = catalog.QuoteLiteral(s)
	}
	return "ARRAY[" + strings.Join(quoted, ", ") + "]::pg_catalog.text[]"
}

// dollarQuote quotes a function body with a tag it does not contain.
func dollarQuote(body string) string {
	tag := "$skein$"
	for strings.Contains(body, tag) {
		tag = "$skein" + fmt.Sprint(len(tag)) + "$"
	}
	return tag + body + tag
}

// captureBody is the capture function: %[1]s the session setting that turns it off, %[2]s the
// message prefix, %[3]s the whole schemas, %[4]s the excluded tables (schema.name), %[5]s the
// publication, %[6]s tableSQL, %[7]s the statement that writes the event ev (see emitEvent).
const captureBody = `
DECLARE
  cmd record;
  part record;
  ev pg_catalog.jsonb;
  others pg_catalog.jsonb := '[]';
  tables pg_catalog.jsonb := '[]';
  indexes pg_catalog.jsonb := '[]';
  dropped pg_catalog.jsonb := '[]';
  sequences pg_catalog.jsonb := '[]';
  t pg_catalog.jsonb;
  tab_oid pg_catalog.oid;
  capture_error text;
BEGIN
  IF pg_catalog.current_setting(%[1]s, true) = 'off' THEN
    RETURN;
  END IF;
  -- What could fail runs in a block of its own: the user's DDL never fails because of Skein.
  -- The message is written outside it (a subtransaction's message would be decoded after the
  -- rows the command's transaction writes next).
  BEGIN
  IF TG_EVENT = 'sql_drop' THEN
    FOR cmd IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
      IF cmd.object_type IN ('table', 'index', 'sequence') AND NOT cmd.is_temporary
         AND cmd.schema_name NOT IN ('pg_catalog', 'pg_toast', 'skein') THEN
        dropped := dropped || pg_catalog.jsonb_build_object('oid', cmd.objid::pg_catalog.int8, 'type', cmd.object_type,
          'schema', cmd.schema_name, 'name', cmd.object_name);
      END IF;
    END LOOP;
  ELSE
    FOR cmd IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
      IF cmd.in_extension OR cmd.schema_name IS NULL OR cmd.schema_name IN ('pg_catalog', 'pg_toast', 'skein') THEN
        CONTINUE;
      END IF;
      IF cmd.classid <> 'pg_catalog.pg_class'::pg_catalog.regclass OR cmd.object_type NOT IN ('table', 'table column', 'index', 'sequence') THEN
        -- Views, functions, types...: not replicated; the stream reports them.
        others := others || pg_catalog.jsonb_build_object('type', cmd.object_type, 'schema', cmd.schema_name, 'identity', cmd.object_identity);
        CONTINUE;
      END IF;
      IF cmd.object_type IN ('table', 'table column') THEN
        IF tables @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('oid', cmd.objid::pg_catalog.int8)) THEN
          CONTINUE;
        END IF;
        EXECUTE %[6]s INTO t USING cmd.objid;
        IF t IS NULL OR (t->>'persistence') = 't' THEN
          CONTINUE;
        END IF;
        tables := tables || pg_catalog.jsonb_build_array(t);
        -- A partitioned table's change reaches its partitions: their states come along.
        IF (t->>'kind') = 'p' THEN
          FOR part IN WITH RECURSIVE tree(relid) AS (
                        SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = cmd.objid
                        UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.relid)
                      SELECT relid FROM tree LOOP
            EXECUTE %[6]s INTO t USING part.relid;
            IF t IS NOT NULL AND NOT tables @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('oid', part.relid::pg_catalog.int8)) THEN
              tables := tables || pg_catalog.jsonb_build_array(t);
            END IF;
          END LOOP;
          EXECUTE %[6]s INTO t USING cmd.objid;
        END IF;
        -- A table created in a schema selected whole joins the publication at once, so that its
        -- first rows stream (a partition streams through its parent).
        IF cmd.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO') AND (t->>'parent') IS NULL
           AND (t->>'persistence') = 'p' AND cmd.schema_name = ANY (%[3]s)
           AND NOT (cmd.schema_name || '.' || (t->>'name')) = ANY (%[4]s) THEN
          EXECUTE pg_catalog.format('ALTER PUBLICATION %%I ADD TABLE %%I.%%I', %[5]s, cmd.schema_name, t->>'name');
        END IF;
      ELSIF cmd.object_type = 'index' THEN
        SELECT i.indrelid INTO tab_oid FROM pg_catalog.pg_index i WHERE i.indexrelid = cmd.objid;
        indexes := indexes || pg_catalog.jsonb_build_object('oid', cmd.objid::pg_catalog.int8,
          'name', (SELECT relname FROM pg_catalog.pg_class WHERE oid = cmd.objid),
          'table', (SELECT pg_catalog.jsonb_build_object('schema', n.nspname, 'name', c.relname) FROM pg_catalog.pg_class c
                    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tab_oid),
          'table_oid', tab_oid::pg_catalog.int8, 'def', pg_catalog.pg_get_indexdef(cmd.objid),
          'constraint', EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = cmd.objid AND k.contype IN ('p', 'u', 'x')));
      ELSIF cmd.object_type = 'sequence' THEN
        sequences := sequences || (SELECT pg_catalog.jsonb_build_object('oid', s.oid::pg_catalog.int8, 'schema', n.nspname, 'name', s.relname,
            'type', ty.typname, 'start', p.seqstart, 'increment', p.seqincrement, 'min', p.seqmin, 'max', p.seqmax,
            'cache', p.seqcache, 'cycle', p.seqcycle,
            'owned_by', EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = s.oid AND d.deptype IN ('a', 'i')
                                AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass),
            'identity', EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.objid = s.oid AND d.deptype = 'i'
                                AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass))
          FROM pg_catalog.pg_class s JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
          JOIN pg_catalog.pg_sequence p ON p.seqrelid = s.oid JOIN pg_catalog.pg_type ty ON ty.oid = p.seqtypid
          WHERE s.oid = cmd.objid);
      END IF;
    END LOOP;
  END IF;
  EXCEPTION WHEN OTHERS THEN
    capture_error := SQLERRM;
  END;
  IF capture_error IS NOT NULL THEN
    -- The stream stops at this event, with the reason, rather than miss the change.
    ev := pg_catalog.jsonb_build_object('tag', TG_TAG, 'query', pg_catalog.current_query(), 'capture_error', capture_error);
  ELSIF tables = '[]' AND indexes = '[]' AND dropped = '[]' AND sequences = '[]' AND others = '[]' THEN
    RETURN;
  ELSE
    ev := pg_catalog.jsonb_build_object('tag', TG_TAG, 'query', pg_catalog.current_query(),
      'tables', tables, 'indexes', indexes, 'dropped', dropped, 'sequences', sequences, 'others', others);
  END IF;
  %[7]s
END`
