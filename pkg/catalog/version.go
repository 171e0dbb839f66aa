package catalog

import (
	"regexp"
	"sync"
)

// Catalog columns that not every supported server version has are read as
// pg_catalog.to_jsonb(alias) ->> 'column': that runs on every version and is null where the column
// does not exist. But to_jsonb builds a JSON document of the whole catalog row for every row read,
// which is most of the time of a query that reads the columns of a thousand tables (0.15 ms of the
// source's time per table, read again by every step of a task). ForVersion writes such a query
// for one server: a column the server has becomes a plain reference.

// catalogColumns are the catalog columns read through to_jsonb, with the first server version
// that has each (server_version_num) and the first that no longer has it (0: all later ones).
var catalogColumns = map[string][2]int{
	"aggfinalmodify":      {110000, 0},
	"aggmfinalmodify":     {110000, 0},
	"attcompression":      {140000, 0},
	"attgenerated":        {120000, 0},
	"attstattarget":       {0, 0}, // int4 with -1 for the default, from 17 a nullable int2
	"conparentid":         {110000, 0},
	"indnkeyatts":         {110000, 0},
	"indnullsnotdistinct": {150000, 0},
	"proisagg":            {0, 110000},
	"proiswindow":         {0, 110000},
	"prokind":             {110000, 0},
	"rngmultitypid":       {140000, 0},
	"stxstattarget":       {130000, 0},
	"tgparentid":          {130000, 0},
	"typsubscript":        {140000, 0},
}

var jsonbColumn = regexp.MustCompile(`pg_catalog\.to_jsonb\(([a-z_][a-z0-9_]*)\) ->> '([a-z_]+)'`)

// forVersionCache holds the queries written by ForVersion, by version and query text.
var forVersionCache sync.Map

type versionedSQL struct {
	num int
	sql string
}

// ForVersion returns sql written for a server of version num (server_version_num): each
// pg_catalog.to_jsonb(alias) ->> 'column' whose column that server has becomes
// (alias.column)::pg_catalog.text, which reads the same. num 0 (unknown) leaves sql as it is.
func ForVersion(sql string, num int) string {
	if num == 0 {
		return sql
	}
	key := versionedSQL{num, sql}
	if v, ok := forVersionCache.Load(key); ok {
		return v.(string)
	}
	out := jsonbColumn.ReplaceAllStringFunc(sql, func(m string) string {
		sub := jsonbColumn.FindStringSubmatch(m)
		span, known := catalogColumns[sub[2]]
		if !known || num < span[0] || span[1] != 0 && num >= span[1] {
			return m
		}
		return "(" + sub[1] + "." + sub[2] + ")::pg_catalog.text"
	})
	forVersionCache.Store(key, out)
	return out
}
