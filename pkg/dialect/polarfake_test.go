package dialect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/testharness"
)

// polarFake is a wire-level stand-in for a PolarDB for PostgreSQL (Compatible with Oracle)
// destination, which cannot run here. It answers the statements Pin sends the way the vendor's
// documentation says such a server behaves:
//
//   - A failed statement rolls back only itself when polar_comp_stmt_level_tx (Oracle syntax
//     compatibility 1.0) or polar_enable_stmt_transaction_rollback (its 2.0 name) is on: "ON:
//     Exceptions do not automatically roll back previous uncommitted database updates. This
//     simulates the behavior of Oracle." The default is ON in compatibility 2.0, OFF in 1.0, and a
//     session may set it. (PolarDB for PostgreSQL (Compatible with Oracle), "Default values of
//     cluster parameters", https://alibabacloud.com/help/en/polardb/latest/parameter-2.)
//   - A DDL statement commits the open transaction when polar_enable_ddl_implicit_commit is on,
//     as Oracle does; the vendor's JDBC test configuration turns it off next to
//     polar_enable_stmt_transaction_rollback = off (ApsaraDB/polardb_jdbc, PolarDB_conf.md,
//     "测试参数"). With it on, a ROLLBACK after the DDL finds no transaction: PostgreSQL's
//     WARNING 25P01 "there is no transaction in progress".
//   - Names may resolve without regard to case: "ORDERS", "orders" and orders are one table, so a
//     second CREATE differing only in case fails as a duplicate (42P07) (the destination guard
//     issue's reading of PolarDB-O's identifier handling; polar_comp_redwood_raw_names).
//   - A parameter name that a version does not have is not in pg_settings; a role may be refused
//     a SET (42501, "permission denied to set parameter").
//
// Everything else (the semantics check after pinning) answers as PostgreSQL does.
type polarFake struct {
	// listed are the settings pg_settings shows, with their values at session start.
	listed map[string]string
	// ddlCommits and stmtRollback: the server behaves so unless the session turned the
	// setting that controls it off (a listed one).
	ddlCommits, stmtRollback bool
	// refuseSet: the session may not set parameters.
	refuseSet bool
	// foldsCase: names resolve without regard to case ("ORDERS" is "orders").
	foldsCase bool
}

var (
	ddlCommitSettings    = []string{"polar_enable_ddl_implicit_commit"}
	stmtRollbackSettings = []string{"polar_comp_stmt_level_tx", "polar_enable_stmt_transaction_rollback"}
)

// start listens on a free loopback port and serves each connection; it returns the port.
func (f *polarFake) start(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// fakeSession is one connection's state.
type fakeSession struct {
	f      *polarFake
	be     *pgproto3.Backend
	vals   map[string]string
	tx     byte // 'I', 'T' or 'E', as ReadyForQuery says
	tables map[string]bool
}

func (f *polarFake) serve(c net.Conn) {
	defer c.Close()
	s := &fakeSession{f: f, be: pgproto3.NewBackend(c, c), vals: map[string]string{}, tx: 'I', tables: map[string]bool{}}
	for k, v := range f.listed {
		s.vals[k] = v
	}
	if _, err := s.be.ReceiveStartupMessage(); err != nil {
		return
	}
	s.be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range map[string]string{"server_version": "14.10", "server_encoding": "UTF8", "client_encoding": "UTF8",
		"standard_conforming_strings": "on", "DateStyle": "ISO, MDY", "integer_datetimes": "on"} {
		s.be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	s.be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	s.ready()
	for {
		msg, err := s.be.Receive()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			s.query(m.String)
		case *pgproto3.Terminate:
			return
		default:
			s.fail("08P01", fmt.Sprintf("fake: unexpected message %T", m))
			s.ready()
		}
		if s.be.Flush() != nil {
			return
		}
	}
}

// effective reports a behaviour that is on unless one of its listed settings is off.
func (s *fakeSession) effective(on bool, names []string) bool {
	if !on {
		return false
	}
	for _, n := range names {
		if v, listed := s.vals[n]; listed && v == "off" {
			return false
		}
	}
	return true
}

func (s *fakeSession) ready() {
	s.be.Send(&pgproto3.ReadyForQuery{TxStatus: s.tx})
	_ = s.be.Flush()
}

func (s *fakeSession) fail(code, msg string) {
	s.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg})
	if s.tx == 'T' {
		s.tx = 'E'
	}
}

func (s *fakeSession) rows(cols []string, rows ...[]string) {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, c := range cols {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	s.be.Send(&pgproto3.RowDescription{Fields: fields})
	for _, r := range rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			if v != "<null>" {
				vals[i] = []byte(v)
			}
		}
		s.be.Send(&pgproto3.DataRow{Values: vals})
	}
	s.done(fmt.Sprintf("SELECT %d", len(rows)))
}

func (s *fakeSession) done(tag string) { s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)}) }

func (s *fakeSession) query(sql string) {
	defer s.ready()
	switch {
	case strings.Contains(sql, "pg_catalog.pg_settings"):
		rows := [][]string{}
		for k, v := range s.f.listed {
			rows = append(rows, []string{"PostgreSQL 14.10 (PolarDB for PostgreSQL (Compatible with Oracle) fake)", k, v})
		}
		if len(rows) == 0 {
			rows = append(rows, []string{"PostgreSQL 14.10 (PolarDB fake)", "<null>", "<null>"})
		}
		s.rows([]string{"version", "name", "setting"}, rows...)
	case strings.HasPrefix(sql, "SET "):
		for _, stmt := range strings.Split(sql, ";") {
			name, value, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(stmt), "SET "), " = ")
			if !ok {
				continue
			}
			if s.f.refuseSet {
				s.fail("42501", fmt.Sprintf("permission denied to set parameter %q", name))
				return
			}
			s.vals[name] = value
			s.done("SET")
		}
	case strings.Contains(sql, `"skein_case"`):
		s.rows([]string{"skein_case", "empty", "date", "path"}, []string{"1", "f", "t", "t"})
	case strings.HasPrefix(sql, "BEGIN; CREATE TEMPORARY TABLE skein_probe_ddl"):
		s.done("BEGIN")
		s.tx = 'T'
		s.done("CREATE TABLE")
		committed := s.effective(s.f.ddlCommits, ddlCommitSettings)
		if committed {
			s.tx = 'I'
			s.tables["skein_probe_ddl"] = true
			s.be.Send(&pgproto3.NoticeResponse{Severity: "WARNING", Code: "25P01", Message: "there is no transaction in progress"})
		}
		s.tx = 'I'
		s.done("ROLLBACK")
		if s.tables["skein_probe_ddl"] {
			s.rows([]string{"?column?"}, []string{"f"})
		} else {
			s.rows([]string{"?column?"}, []string{"t"})
		}
		delete(s.tables, "skein_probe_ddl")
		s.done("DROP TABLE")
	case strings.HasPrefix(sql, `BEGIN; CREATE TEMPORARY TABLE "skein_fold_probe"`):
		s.done("BEGIN")
		s.tx = 'T'
		s.done("CREATE TABLE")
		if s.f.foldsCase {
			s.fail("42P07", `relation "SKEIN_FOLD_PROBE" already exists`)
			return
		}
		s.done("CREATE TABLE")
	case sql == "BEGIN; SELECT 1 / 0":
		s.done("BEGIN")
		s.tx = 'T'
		s.fail("22012", "division by zero")
		if s.effective(s.f.stmtRollback, stmtRollbackSettings) {
			s.tx = 'T' // only the statement is rolled back
		}
	case sql == "SELECT 1":
		if s.tx == 'E' {
			s.fail("25P02", "current transaction is aborted, commands ignored until end of transaction block")
			return
		}
		s.rows([]string{"?column?"}, []string{"1"})
	case sql == "ROLLBACK":
		s.tx = 'I'
		s.done("ROLLBACK")
	default:
		s.fail("42601", "fake: unexpected query: "+sql)
	}
}

// TestPinProbesBehaviour pins sessions of a PolarDB-O stand-in (polarFake) that commits DDL
// implicitly and rolls back only a failed statement: where the server lists the setting and the
// session may set it, Pin turns it off and the probes pass; where the setting has another name
// (the behaviour is on all the same) or the session may not set it, Pin refuses the session naming
// the behaviour found and the setting to change.
func TestPinProbesBehaviour(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fake       polarFake
		wantPinned []string
		wantErr    []string
	}{
		{"settings listed and settable: pinned", polarFake{ddlCommits: true, stmtRollback: true,
			listed: map[string]string{"polar_enable_ddl_implicit_commit": "on", "polar_enable_stmt_transaction_rollback": "on"}},
			[]string{"polar_enable_stmt_transaction_rollback = off", "polar_enable_ddl_implicit_commit = off"}, nil},
		{"1.0 name of statement-level rollback: pinned", polarFake{stmtRollback: true, listed: map[string]string{"polar_comp_stmt_level_tx": "on"}},
			[]string{"polar_comp_stmt_level_tx = off"}, nil},
		{"implicit DDL commit under a name Skein does not know", polarFake{ddlCommits: true},
			nil, []string{"a DDL statement committed the open transaction", "polar_enable_ddl_implicit_commit off"}},
		{"statement-level rollback under a name Skein does not know", polarFake{stmtRollback: true},
			nil, []string{"a statement after a failed one in the same transaction succeeded", "polar_enable_stmt_transaction_rollback"}},
		{"both, in one refusal", polarFake{ddlCommits: true, stmtRollback: true},
			nil, []string{"a DDL statement committed", "statement-level rollback"}},
		{"the session may not set them", polarFake{ddlCommits: true, refuseSet: true, listed: map[string]string{"polar_enable_ddl_implicit_commit": "on"}},
			nil, []string{"the session cannot set polar_enable_ddl_implicit_commit = off", "permission denied"}},
		{"behaves as PostgreSQL: nothing to pin", polarFake{listed: map[string]string{"polar_enable_ddl_implicit_commit": "off"}}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			port := tc.fake.start(t)
			conn := connect(t, port)
			d, err := Pin(ctx, conn)
			if tc.wantErr != nil {
				var de *Error
				require.True(t, errors.As(err, &de), "%v", err)
				for _, w := range tc.wantErr {
					require.Contains(t, de.Error(), w)
				}
				require.Equal(t, Dialect{}, Of(conn), "a refused session records no dialect")
				return
			}
			require.NoError(t, err)
			require.Equal(t, "PolarDB", d.Product)
			require.ElementsMatch(t, tc.wantPinned, d.Pinned)
			for _, p := range d.Probes {
				require.True(t, p.OK, "%s: %s", p.Name, p.Found)
			}
		})
	}
}

// TestFoldsCase: a destination that resolves names without regard to case is found out (the
// fake answers as one would); PostgreSQL and a pinned IvorySQL session keep names apart, and the
// session is usable after the probe.
func TestFoldsCase(t *testing.T) {
	ctx := context.Background()
	for _, folds := range []bool{true, false} {
		conn := connect(t, (&polarFake{foldsCase: folds}).start(t))
		got, err := FoldsCase(ctx, conn)
		require.NoError(t, err)
		require.Equal(t, folds, got)
		_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
		require.NoError(t, err, "the probe's transaction is over")
	}
	if testing.Short() {
		return
	}
	for _, port := range []int{testharness.NewPostgres(t, testharness.PostgresOptions{}).Port, testharness.NewIvorySQL(t, testharness.PostgresOptions{}).OraclePort} {
		conn := connect(t, port)
		_, err := Pin(ctx, conn)
		require.NoError(t, err)
		got, err := FoldsCase(ctx, conn)
		require.NoError(t, err)
		require.False(t, got)
	}
}
