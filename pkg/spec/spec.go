// Package spec defines the sync task specification (TASKSPEC.md): its types, parsing from YAML or
// JSON, defaults and validation. A validated Spec never holds a secret, only secret names.
package spec

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Spec is one sync task.
type Spec struct {
	Name           string   `json:"name"`
	Source         Endpoint `json:"source"`
	Destination    Endpoint `json:"destination"`
	Sync           Sync     `json:"sync"`
	ConflictMode   string   `json:"conflict_mode,omitempty"`
	Objects        []Object `json:"objects"`
	Retry          Retry    `json:"retry"`
	FullLoad       FullLoad `json:"full_load"`
	Apply          Apply    `json:"apply"`
	Throttle       Throttle `json:"throttle"`
	Verify         Verify   `json:"verify"`
	Alerts         Alerts   `json:"alerts"`
	IgnorePrecheck []string `json:"ignore_precheck,omitempty"`
	// ShowRowValues keeps the row values servers put into their errors (a failing row, a value
	// that does not parse) in Skein's errors, status, logs and webhooks. Off by default: only
	// for test systems whose data is not sensitive.
	ShowRowValues bool `json:"show_row_values,omitempty"`

	// inputErrs are the fields of the decoded document that did not fit (UnmarshalJSON):
	// Validate reports them.
	inputErrs Errors
}

// Endpoint is a database to read from or write to.
type Endpoint struct {
	Host           string `json:"host"`
	Port           int    `json:"port,omitempty"`
	Database       string `json:"database"`
	User           string `json:"user"`
	PasswordSecret string `json:"password_secret,omitempty"`
	TLS            TLS    `json:"tls"`
}

// Describe names the endpoint as user@host:port/database, never a secret.
func (e Endpoint) Describe() string {
	return fmt.Sprintf("%s@%s:%d/%s", e.User, e.Host, e.Port, e.Database)
}

// TLS configures transport security; the *_secret fields name secrets holding PEM content.
type TLS struct {
	Mode              string `json:"mode,omitempty"`
	CASecret          string `json:"ca_secret,omitempty"`
	CertSecret        string `json:"cert_secret,omitempty"`
	KeySecret         string `json:"key_secret,omitempty"`
	KeyPasswordSecret string `json:"key_password_secret,omitempty"`
}

// Sync selects the synchronization steps. A nil field means true.
type Sync struct {
	Schema      *bool `json:"schema,omitempty"`
	Full        *bool `json:"full,omitempty"`
	Incremental *bool `json:"incremental,omitempty"`
}

// Object selects a source schema, or some of its tables.
type Object struct {
	Schema        string   `json:"schema"`
	To            string   `json:"to,omitempty"`
	Tables        []Table  `json:"tables,omitempty"`
	ExcludeTables []string `json:"exclude_tables,omitempty"`
}

// Table selects one source table.
type Table struct {
	Name    string            `json:"name"`
	To      string            `json:"to,omitempty"`
	Columns map[string]string `json:"columns,omitempty"`
	// ColumnTypes gives source columns another type on the destination (column -> type, as
	// SQL writes it: text, varchar(200), numeric(12,2)): the destination reads each value's
	// text form as that type, in the load and in the change stream. For what a destination
	// lacks (xml on a server without libxml: `x: text`).
	ColumnTypes map[string]string `json:"column_types,omitempty"`
	Where       string            `json:"where,omitempty"`
	Operations  []string          `json:"operations,omitempty"`
}

// Retry sets the retry windows, in minutes from the first failure of a streak.
type Retry struct {
	ConnectionMinutes int `json:"connection_minutes,omitempty"`
	OtherMinutes      int `json:"other_minutes,omitempty"`
}

// FullLoad tunes the full data load.
type FullLoad struct {
	Parallelism int `json:"parallelism,omitempty"`
	ChunkMB     int `json:"chunk_mb,omitempty"`
}

// Apply tunes change apply.
type Apply struct {
	// Lanes is how many destination sessions apply changes at once (0: one). Each table's rows
	// are spread over them by key (or the table goes whole to one); what cannot be split (a
	// TRUNCATE, a schema change, a key change) waits for all of them. Between those points the
	// destination may show part of a source transaction; where the lanes meet it is whole.
	Lanes int `json:"lanes,omitempty"`
}

// ApplyLanes is the number of apply lanes: Apply.Lanes, or 1.
func (s *Spec) ApplyLanes() int { return max(1, s.Apply.Lanes) }

// Throttle limits the load on the servers; 0 means unlimited.
type Throttle struct {
	Full        ThrottleFull        `json:"full"`
	Incremental ThrottleIncremental `json:"incremental"`
}

// ThrottleFull limits the full load.
type ThrottleFull struct {
	SourceQPS     int `json:"source_qps,omitempty"`
	RowsPerSecond int `json:"rows_per_second,omitempty"`
	MBPerSecond   int `json:"mb_per_second,omitempty"`
}

// ThrottleIncremental limits change apply.
type ThrottleIncremental struct {
	RowsPerSecond int `json:"rows_per_second,omitempty"`
	MBPerSecond   int `json:"mb_per_second,omitempty"`
}

// Verify configures the comparison of source and destination after the full load.
type Verify struct {
	Mode          string `json:"mode,omitempty"`
	SamplePercent int    `json:"sample_percent,omitempty"`
	// EveryMinutes runs the comparison on a schedule while the task streams (0 = off), the
	// sampled chunks taken by turn; Repair repairs what it finds (and what skein verify finds
	// is repaired with --repair).
	EveryMinutes int  `json:"every_minutes,omitempty"`
	Repair       bool `json:"repair,omitempty"`
}

// Alerts configures lag and failure alerts.
type Alerts struct {
	LatencySeconds int    `json:"latency_seconds,omitempty"`
	WebhookURL     string `json:"webhook_url,omitempty"`
	// WebhookURLSecret names a secret holding the URL, resolved on the worker: a URL that carries
	// a token stays out of the history, logs and errors.
	WebhookURLSecret string `json:"webhook_url_secret,omitempty"`
}

// Enabled reports whether any alert is configured.
func (a Alerts) Enabled() bool {
	return a.LatencySeconds > 0 || a.WebhookURL != "" || a.WebhookURLSecret != ""
}

// Operation names accepted in Table.Operations.
const (
	OpInsert   = "insert"
	OpUpdate   = "update"
	OpDelete   = "delete"
	OpTruncate = "truncate"
	OpDDL      = "ddl"
)

// AllOperations is the default operation set of a table.
var AllOperations = []string{OpInsert, OpUpdate, OpDelete, OpTruncate, OpDDL}

// Verify modes.
const (
	VerifyNone     = "none"
	VerifyCount    = "count"
	VerifyChecksum = "checksum"
)

// Conflict modes.
const (
	ConflictError  = "error"
	ConflictIgnore = "ignore"
)

// Parse reads a spec from YAML or JSON (JSON is YAML), rejects unknown fields, applies defaults and
// validates it. The error names every offending field.
func Parse(data []byte) (Spec, error) {
	var s Spec
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return s, fmt.Errorf("spec: not valid YAML or JSON: %w", err)
	}
	if err := json.Unmarshal(js, &s); err != nil {
		return s, err
	}
	if len(s.inputErrs) > 0 {
		return s, s.inputErrs
	}
	s.ApplyDefaults()
	if err := s.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// ParseObjects reads an `objects` list (for modify-objects) with the same rules as Parse: a bare
// list, or a document with an `objects:` key.
func ParseObjects(data []byte) ([]Object, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("objects: not valid YAML or JSON: %w", err)
	}
	objs, err := decodeObjects(js)
	if err != nil {
		return nil, err
	}
	var errs Errors
	validateObjects(&errs, objs)
	return objs, errs.orNil()
}

// ApplyDefaults fills every omitted field with its documented default. It is idempotent.
func (s *Spec) ApplyDefaults() {
	for _, ep := range []*Endpoint{&s.Source, &s.Destination} {
		if ep.Port == 0 {
			ep.Port = 5432
		}
		if ep.TLS.Mode == "" {
			ep.TLS.Mode = "disable"
		}
	}
	t := true
	if s.Sync.Schema == nil {
		s.Sync.Schema = &t
	}
	if s.Sync.Full == nil {
		s.Sync.Full = &t
	}
	if s.Sync.Incremental == nil {
		s.Sync.Incremental = &t
	}
	if s.ConflictMode == "" {
		s.ConflictMode = ConflictError
	}
	for i := range s.Objects {
		for j := range s.Objects[i].Tables {
			if len(s.Objects[i].Tables[j].Operations) == 0 {
				s.Objects[i].Tables[j].Operations = append([]string(nil), AllOperations...)
			}
		}
	}
	if s.Retry.ConnectionMinutes == 0 {
		s.Retry.ConnectionMinutes = 720
	}
	if s.Retry.OtherMinutes == 0 {
		s.Retry.OtherMinutes = 10
	}
	if s.FullLoad.Parallelism == 0 {
		s.FullLoad.Parallelism = 4
	}
	if s.FullLoad.ChunkMB == 0 {
		s.FullLoad.ChunkMB = 64
	}
	if s.Verify.Mode == "" {
		s.Verify.Mode = VerifyChecksum
	}
	if s.Verify.SamplePercent == 0 {
		s.Verify.SamplePercent = 100
	}
}

// WholeSchemas lists the schemas selected whole (no table list): their other objects (views,
// functions, sequences...) come with their tables.
func (s *Spec) WholeSchemas() []string {
	var out []string
	for _, o := range s.Objects {
		if len(o.Tables) == 0 {
			out = append(out, o.Schema)
		}
	}
	return out
}

// SchemaSync reports whether schema synchronization is on.
func (s *Spec) SchemaSync() bool { return s.Sync.Schema == nil || *s.Sync.Schema }

// FullSync reports whether the full data load is on.
func (s *Spec) FullSync() bool { return s.Sync.Full == nil || *s.Sync.Full }

// IncrementalSync reports whether change data capture is on.
func (s *Spec) IncrementalSync() bool { return s.Sync.Incremental == nil || *s.Sync.Incremental }

// SlotName is the name of the replication slot and publication Skein creates on the source.
// Slot names allow only a-z, 0-9 and _, so '-' in the task name becomes '_'.
func (s *Spec) SlotName() string { return SlotNameFor(s.Name) }

// SlotNameFor returns the slot and publication name of the task called name.
func SlotNameFor(name string) string {
	return "skein_" + strings.ReplaceAll(name, "-", "_")
}

// Helper is the spec of the helper stream that loads the tables a modify-objects adds to a running
// task: its own slot, publication and bookkeeping, dropped once the tables join the task's stream.
func (s Spec) Helper() Spec {
	h := s
	h.Name = s.Name + helperSuffix
	return h
}

// IsHelper reports whether s is the spec of a helper stream (Helper).
func (s Spec) IsHelper() bool { return strings.HasSuffix(s.Name, helperSuffix) }

// CapturesSchemaChanges reports whether the task replicates the source's schema changes: an
// incremental task (not a helper stream) that does not ignore the ddl_capture precheck item.
func (s Spec) CapturesSchemaChanges() bool {
	return s.IncrementalSync() && !s.IsHelper() && !slices.Contains(s.IgnorePrecheck, "ddl_capture")
}

// helperSuffix ends the name of a task's helper stream; task names may not end in it.
const helperSuffix = "--add"

// Summary is the task's one-line summary for the Temporal UI and CLI (the workflow's static
// summary): name, source and destination (user@host:port/database, never a secret), steps.
func (s Spec) Summary() string {
	var steps []string
	for _, st := range []struct {
		on   bool
		name string
	}{{s.SchemaSync(), "schema"}, {s.FullSync(), "full"}, {s.IncrementalSync(), "incremental"}} {
		if st.on {
			steps = append(steps, st.name)
		}
	}
	ep := Endpoint.Describe
	return fmt.Sprintf("Skein task %s: %s → %s (%s)", s.Name, ep(s.Source), ep(s.Destination), strings.Join(steps, " + "))
}

// Details lists the task's selection for the Temporal UI (the workflow's static details, Markdown).
func (s Spec) Details() string {
	var b strings.Builder
	b.WriteString("Objects:\n")
	for _, o := range s.Objects {
		fmt.Fprintf(&b, "- schema %s", o.Schema)
		if o.To != "" {
			fmt.Fprintf(&b, " → %s", o.To)
		}
		switch {
		case len(o.Tables) > 0:
			names := make([]string, len(o.Tables))
			for i, t := range o.Tables {
				names[i] = t.Name
				if t.To != "" {
					names[i] += " → " + t.To
				}
			}
			fmt.Fprintf(&b, ": tables %s", strings.Join(names, ", "))
		case len(o.ExcludeTables) > 0:
			fmt.Fprintf(&b, ": whole, except %s", strings.Join(o.ExcludeTables, ", "))
		default:
			b.WriteString(": whole")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nConflict mode %s; full load parallelism %d, chunks of %d MB; apply lanes %d", s.ConflictMode, s.FullLoad.Parallelism, s.FullLoad.ChunkMB, s.ApplyLanes())
	return b.String()
}

// ShowsRowValues reports show_row_values (the worker's interceptor asks every activity input).
func (s Spec) ShowsRowValues() bool { return s.ShowRowValues }
