package spec

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// FieldError is one invalid field of a spec.
type FieldError struct {
	Field string // dotted path, e.g. "objects[0].tables[1].name"
	Msg   string // what is wrong and what to do
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// Errors is every problem found in a spec.
type Errors []FieldError

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return "invalid spec: " + strings.Join(parts, "; ")
}

func (e *Errors) add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (e Errors) orNil() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,48}$`)

// PrecheckIDs are the stable ids of the precheck items; ignore_precheck may name only these.
var PrecheckIDs = []string{
	"source_connect", "dest_connect", "source_version", "dest_version", "source_db_name", "wal_level",
	"replication_slots", "wal_senders", "source_privileges", "dest_privileges",
	"replica_role_privilege", "objects_exist", "primary_keys", "replica_identity",
	"conflicting_tables", "dest_schemas", "sequences_selected", "unsupported_tables",
	"fk_parents_selected", "dest_extensions", "long_transactions", "source_size",
	"dest_compatibility", "row_filters", "unlogged_tables", "ddl_capture", "dest_capabilities",
	"dest_libraries", "dest_features",
}

// Validate checks a spec whose defaults are applied. It returns Errors naming each bad field.
func (s *Spec) Validate() error {
	if len(s.inputErrs) > 0 {
		return s.inputErrs // the rest was decoded from a document that does not fit
	}
	var errs Errors
	if s.Name == "" {
		errs.add("name", "required: 1-48 characters of a-z 0-9 _ -")
	} else if !nameRE.MatchString(s.Name) {
		errs.add("name", "%q is not 1-48 characters of a-z 0-9 _ -", s.Name)
	} else if strings.HasSuffix(s.Name, helperSuffix) {
		errs.add("name", "%q ends in %q, which names the helper stream of a task adding tables: choose another name", s.Name, helperSuffix)
	}
	validateEndpoint(&errs, "source", s.Source)
	validateEndpoint(&errs, "destination", s.Destination)
	if strings.Contains(s.Source.Database, "-") {
		errs.add("source.database", "%q contains '-', which logical decoding cannot use: rename the database", s.Source.Database)
	}
	if !s.SchemaSync() && !s.FullSync() && !s.IncrementalSync() {
		errs.add("sync", "at least one of schema, full and incremental must be true")
	}
	switch s.ConflictMode {
	case ConflictError, ConflictIgnore:
	default:
		errs.add("conflict_mode", "%q is not one of error, ignore", s.ConflictMode)
	}
	if len(s.Objects) == 0 {
		errs.add("objects", "required: list at least one schema")
	}
	validateObjects(&errs, s.Objects)
	if r := s.Retry.ConnectionMinutes; r < 10 || r > 1440 {
		errs.add("retry.connection_minutes", "%d is outside 10..1440", r)
	}
	if r := s.Retry.OtherMinutes; r < 1 || r > 1440 {
		errs.add("retry.other_minutes", "%d is outside 1..1440", r)
	} else if r >= s.Retry.ConnectionMinutes {
		errs.add("retry.other_minutes", "%d must be less than retry.connection_minutes (%d)", r, s.Retry.ConnectionMinutes)
	}
	if p := s.FullLoad.Parallelism; p < 1 || p > 64 {
		errs.add("full_load.parallelism", "%d is outside 1..64", p)
	}
	if l := s.Apply.Lanes; l < 0 || l > 16 {
		errs.add("apply.lanes", "%d is outside 1..16", l)
	}
	if c := s.FullLoad.ChunkMB; c < 1 || c > 65536 {
		errs.add("full_load.chunk_mb", "%d is outside 1..65536", c)
	}
	t := s.Throttle
	for field, v := range map[string]int{
		"throttle.full.source_qps":             t.Full.SourceQPS,
		"throttle.full.rows_per_second":        t.Full.RowsPerSecond,
		"throttle.full.mb_per_second":          t.Full.MBPerSecond,
		"throttle.incremental.rows_per_second": t.Incremental.RowsPerSecond,
		"throttle.incremental.mb_per_second":   t.Incremental.MBPerSecond,
	} {
		if v < 0 {
			errs.add(field, "%d is negative; 0 means unlimited", v)
		}
	}
	switch s.Verify.Mode {
	case VerifyNone, VerifyCount, VerifyChecksum:
	default:
		errs.add("verify.mode", "%q is not one of none, count, checksum", s.Verify.Mode)
	}
	if p := s.Verify.SamplePercent; p < 1 || p > 100 {
		errs.add("verify.sample_percent", "%d is outside 1..100", p)
	}
	switch m := s.Verify.EveryMinutes; {
	case m < 0 || m > 10080:
		errs.add("verify.every_minutes", "%d is outside 0..10080 (0 = off)", m)
	case m > 0 && !s.IncrementalSync():
		errs.add("verify.every_minutes", "a schedule runs while the task streams changes: the task has no incremental sync")
	}
	if s.Verify.Repair && s.ConflictMode == ConflictIgnore {
		errs.add("verify.repair", "conflict_mode ignore keeps destination rows that differ from the source: repair would overwrite them")
	}
	if s.Alerts.LatencySeconds < 0 {
		errs.add("alerts.latency_seconds", "%d is negative; 0 turns the alert off", s.Alerts.LatencySeconds)
	}
	if s.Alerts.WebhookURL != "" {
		if !WebhookURLValid(s.Alerts.WebhookURL) {
			errs.add("alerts.webhook_url", "not an http:// or https:// URL")
		}
	}
	if w := s.Alerts.WebhookURLSecret; w != "" {
		if s.Alerts.WebhookURL != "" {
			errs.add("alerts.webhook_url_secret", "set webhook_url or webhook_url_secret, not both")
		}
		if !secretNameRE.MatchString(w) {
			errs.add("alerts.webhook_url_secret", "%q is not a secret name (letters, digits, _ . -)", w)
		}
	}
	for i, id := range s.IgnorePrecheck {
		if !slices.Contains(PrecheckIDs, id) {
			errs.add(fmt.Sprintf("ignore_precheck[%d]", i), "%q is not a precheck item id", id)
		}
	}
	// Sort for a stable message: map iteration above is random.
	slices.SortStableFunc(errs, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return errs.orNil()
}

func validateEndpoint(errs *Errors, field string, ep Endpoint) {
	if ep.Host == "" {
		errs.add(field+".host", "required")
	}
	if ep.Port < 1 || ep.Port > 65535 {
		errs.add(field+".port", "%d is not a TCP port (1..65535)", ep.Port)
	}
	if ep.Database == "" {
		errs.add(field+".database", "required")
	}
	if ep.User == "" {
		errs.add(field+".user", "required")
	}
	if ep.PasswordSecret != "" && !secretNameRE.MatchString(ep.PasswordSecret) {
		errs.add(field+".password_secret", "%q is not a secret name (letters, digits, _ . -)", ep.PasswordSecret)
	}
	t := ep.TLS
	switch t.Mode {
	case "disable":
		if t.CASecret != "" || t.CertSecret != "" || t.KeySecret != "" {
			errs.add(field+".tls.mode", "is disable, but certificates are named: set a mode, or drop the secrets")
		}
	case "require":
	case "verify-ca", "verify-full":
		if t.CASecret == "" {
			errs.add(field+".tls.ca_secret", "required with mode %s: name the secret that holds the CA certificate (PEM)", t.Mode)
		}
	default:
		errs.add(field+".tls.mode", "%q is not one of disable, require, verify-ca, verify-full", t.Mode)
	}
	if (t.CertSecret == "") != (t.KeySecret == "") {
		errs.add(field+".tls.cert_secret", "cert_secret and key_secret go together (client certificate and its key)")
	}
	for name, v := range map[string]string{"ca_secret": t.CASecret, "cert_secret": t.CertSecret, "key_secret": t.KeySecret, "key_password_secret": t.KeyPasswordSecret} {
		if v != "" && !secretNameRE.MatchString(v) {
			errs.add(field+".tls."+name, "%q is not a secret name (letters, digits, _ . -)", v)
		}
	}
	if t.KeyPasswordSecret != "" && t.KeySecret == "" {
		errs.add(field+".tls.key_password_secret", "names the password of an encrypted client key: set key_secret (and cert_secret) too")
	}
}

var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

func validateIdent(errs *Errors, field, v string) {
	if v == "" {
		errs.add(field, "required")
	} else if len(v) > 63 {
		errs.add(field, "%q is longer than PostgreSQL's 63-byte identifier limit", v)
	} else if strings.ContainsRune(v, 0) {
		errs.add(field, "contains a NUL character")
	}
}

func validateObjects(errs *Errors, objs []Object) {
	seenSchema := map[string]bool{}
	destTables := map[string]string{} // "schema"."table" on the destination -> field that maps to it
	for i, o := range objs {
		f := fmt.Sprintf("objects[%d]", i)
		validateIdent(errs, f+".schema", o.Schema)
		if seenSchema[o.Schema] {
			errs.add(f+".schema", "%q is listed twice: merge the entries", o.Schema)
		}
		seenSchema[o.Schema] = true
		if o.To != "" {
			validateIdent(errs, f+".to", o.To)
		}
		if len(o.Tables) > 0 && len(o.ExcludeTables) > 0 {
			errs.add(f+".exclude_tables", "goes only with a whole schema (no tables list): drop one of them")
		}
		for j, x := range o.ExcludeTables {
			validateIdent(errs, fmt.Sprintf("%s.exclude_tables[%d]", f, j), x)
		}
		destSchema := o.Schema
		if o.To != "" {
			destSchema = o.To
		}
		seenTable := map[string]bool{}
		for j, t := range o.Tables {
			tf := fmt.Sprintf("%s.tables[%d]", f, j)
			validateIdent(errs, tf+".name", t.Name)
			if seenTable[t.Name] {
				errs.add(tf+".name", "%q is listed twice in schema %q", t.Name, o.Schema)
			}
			seenTable[t.Name] = true
			destName := t.Name
			if t.To != "" {
				validateIdent(errs, tf+".to", t.To)
				destName = t.To
			}
			key := destSchema + "\x00" + destName
			if other, ok := destTables[key]; ok {
				errs.add(tf+".to", "maps to %q.%q, as %s does", destSchema, destName, other)
			}
			destTables[key] = tf
			destCols := map[string]string{}
			for from, to := range t.Columns {
				validateIdent(errs, tf+".columns."+from, to)
				if prev, ok := destCols[to]; ok {
					errs.add(tf+".columns."+from, "maps to %q, as column %q does", to, prev)
				}
				destCols[to] = from
			}
			for _, col := range slices.Sorted(maps.Keys(t.ColumnTypes)) {
				validateIdent(errs, tf+".column_types", col)
				if err := checkTypeName(t.ColumnTypes[col]); err != nil {
					errs.add(tf+".column_types."+col, "%v", err)
				}
			}
			if t.Where != "" {
				if err := checkExpression(t.Where); err != nil {
					errs.add(tf+".where", "%v", err)
				}
			}
			for k, op := range t.Operations {
				if !slices.Contains(AllOperations, op) {
					errs.add(fmt.Sprintf("%s.operations[%d]", tf, k), "%q is not one of %s", op, strings.Join(AllOperations, ", "))
				}
			}
		}
	}
}

// typeName is a type as SQL writes it: a name (qualified or not, of one or more words), an
// optional modifier of numbers, array brackets.
var typeName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?( [A-Za-z_][A-Za-z0-9_]*)*( ?\( *[0-9]+( *, *[0-9]+)? *\))?( [A-Za-z_][A-Za-z0-9_]*)*(\[\])*$`)

// checkTypeName accepts a type name for column_types; the destination says whether it exists
// and the source whether its values cast to it (precheck dest_capabilities).
func checkTypeName(t string) error {
	if !typeName.MatchString(t) {
		return fmt.Errorf("%q is not a type name (e.g. text, varchar(200), numeric(12,2), timestamp with time zone)", t)
	}
	return nil
}

// checkExpression makes sure a row filter stays one expression wherever Skein puts it between
// parentheses: outside quoted text it may hold no ';', no comment and no unbalanced parenthesis.
// The source checks the rest (precheck row_filters).
func checkExpression(expr string) error {
	if strings.TrimSpace(expr) == "" {
		return fmt.Errorf("is empty; leave it out to copy every row")
	}
	depth := 0
	for i := 0; i < len(expr); i++ {
		switch ch := expr[i]; {
		case ch == '\'' || ch == '"':
			escapes := ch == '\'' && i > 0 && (expr[i-1] == 'E' || expr[i-1] == 'e')
			j := i + 1
			for ; j < len(expr); j++ {
				if escapes && expr[j] == '\\' {
					j++
					continue
				}
				if expr[j] == ch {
					if j+1 < len(expr) && expr[j+1] == ch { // doubled quote
						j++
						continue
					}
					break
				}
			}
			if j >= len(expr) {
				return fmt.Errorf("has an unterminated %c quote", ch)
			}
			i = j
		case ch == '$':
			return fmt.Errorf("uses '$' (dollar quoting or parameters); write string constants in single quotes")
		case ch == ';':
			return fmt.Errorf("must be one SQL expression, without ';'")
		case strings.HasPrefix(expr[i:], "--") || strings.HasPrefix(expr[i:], "/*"):
			return fmt.Errorf("must not contain comments")
		case ch == '(':
			depth++
		case ch == ')':
			depth--
			if depth < 0 {
				return fmt.Errorf("has a ')' without its '('")
			}
		}
	}
	if depth != 0 {
		return fmt.Errorf("has a '(' without its ')'")
	}
	return nil
}

// WebhookURLValid reports whether u is an http:// or https:// URL with a host.
func WebhookURLValid(u string) bool {
	parsed, err := url.Parse(u)
	return err == nil && (parsed.Scheme == "http" || parsed.Scheme == "https") && parsed.Host != ""
}
