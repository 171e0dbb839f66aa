package spec

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// zeroless lists the fields whose zero value is not valid, with what to write instead. Omitted,
// each takes its default (ApplyDefaults); written as 0 (or ""), it is rejected rather than
// silently replaced by the default.
var zeroless = map[string]string{
	"source.port":              "1..65535, or leave it out for 5432",
	"destination.port":         "1..65535, or leave it out for 5432",
	"source.tls.mode":          "disable, require, verify-ca or verify-full, or leave it out for disable",
	"destination.tls.mode":     "disable, require, verify-ca or verify-full, or leave it out for disable",
	"conflict_mode":            "error or ignore, or leave it out for error",
	"retry.connection_minutes": "10..1440, or leave it out for 720",
	"retry.other_minutes":      "1..1440, or leave it out for 10",
	"full_load.parallelism":    "1..64, or leave it out for 4",
	"full_load.chunk_mb":       "1..65536, or leave it out for 64",
	"apply.lanes":              "1..16, or leave it out for 1",
	"verify.mode":              "none, count or checksum, or leave it out for checksum",
	"verify.sample_percent":    "1..100, or leave it out for 100",
}

// explicitZeros reports the fields of zeroless that the document sets to 0 or "".
func explicitZeros(js []byte) Errors {
	var doc map[string]any
	if json.Unmarshal(js, &doc) != nil {
		return nil // decodeStrict reports it
	}
	var errs Errors
	for _, field := range slices.Sorted(maps.Keys(zeroless)) {
		v, ok := lookup(doc, strings.Split(field, "."))
		if !ok {
			continue
		}
		switch x := v.(type) {
		case float64:
			if x == 0 {
				errs.add(field, "0 is not valid: write %s", zeroless[field])
			}
		case string:
			if x == "" {
				errs.add(field, "an empty value is not valid: write %s", zeroless[field])
			}
		}
	}
	return errs
}

// lookup follows path through nested objects.
func lookup(doc map[string]any, path []string) (any, bool) {
	v, ok := doc[path[0]]
	if !ok || len(path) == 1 {
		return v, ok
	}
	inner, isMap := v.(map[string]any)
	if !isMap {
		return nil, false
	}
	return lookup(inner, path[1:])
}
