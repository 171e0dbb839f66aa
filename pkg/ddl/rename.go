package ddl

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// MapExpr rewrites the column references of a deparsed expression (pg_get_expr,
// pg_get_constraintdef, pg_get_indexdef output) of one table: every identifier that names a
// renamed column (renames) becomes the quoted new name. Text in quotes, qualified names (a.b),
// function names (followed by "(") and type names (after "::") are left alone; the expressions
// these functions print for one table name only that table's columns, so this is exact for them.
// It also maps schema-qualified names: an identifier followed by "." that names a renamed schema
// (schemas) becomes the quoted destination schema (pg_get_expr qualifies every name outside
// pg_catalog when the search path is empty, as Skein reads it).
func MapExpr(expr string, renames map[string]string, schemas map[string]string) string {
	if len(renames) == 0 && len(schemas) == 0 {
		return expr
	}
	var out strings.Builder
	prevSignificant := "" // the last token that is not white space
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '\'':
			j := skipQuoted(expr, i, '\'', i > 0 && (expr[i-1] == 'E' || expr[i-1] == 'e'))
			out.WriteString(expr[i:j])
			prevSignificant = "'"
			i = j
		case c == '$' && dollarTag(expr[i:]) != "":
			tag := dollarTag(expr[i:])
			end := strings.Index(expr[i+len(tag):], tag)
			j := len(expr)
			if end >= 0 {
				j = i + len(tag) + end + len(tag)
			}
			out.WriteString(expr[i:j])
			prevSignificant = "$"
			i = j
		case c == '"':
			j := skipQuoted(expr, i, '"', false)
			name := strings.ReplaceAll(expr[i+1:max(i+1, j-1)], `""`, `"`)
			out.WriteString(renameToken(expr, i, j, name, prevSignificant, renames, schemas))
			prevSignificant = "ident"
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(expr) && isIdentPart(expr[j]) {
				j++
			}
			out.WriteString(renameToken(expr, i, j, expr[i:j], prevSignificant, renames, schemas))
			prevSignificant = "ident"
			i = j
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			out.WriteByte(c)
			i++
		default:
			if c == ':' && i+1 < len(expr) && expr[i+1] == ':' {
				out.WriteString("::")
				prevSignificant = "::"
				i += 2
				continue
			}
			out.WriteByte(c)
			prevSignificant = string(c)
			i++
		}
	}
	return out.String()
}

// renameToken maps the identifier expr[i:j] (named name; a bare name as written) when it is a
// column reference or the schema of a qualified name.
func renameToken(expr string, i, j int, name, prev string, renames, schemas map[string]string) string {
	if expr[i] != '"' {
		name = strings.ToLower(name)
	}
	next := strings.TrimLeft(expr[j:], " \t\n\r")
	if prev == "." {
		return expr[i:j]
	}
	if strings.HasPrefix(next, ".") {
		if to, ok := schemas[name]; ok {
			return pgx.Identifier{to}.Sanitize()
		}
		return expr[i:j]
	}
	to, ok := renames[name]
	if !ok || prev == "::" || strings.HasPrefix(next, "(") {
		return expr[i:j]
	}
	return pgx.Identifier{to}.Sanitize()
}

// skipQuoted returns the index just past the quoted text starting at expr[i] (a doubled quote
// stays inside; with backslashes, a backslash escapes the next byte).
func skipQuoted(expr string, i int, q byte, backslashes bool) int {
	j := i + 1
	for j < len(expr) {
		switch {
		case backslashes && expr[j] == '\\':
			j += 2
			continue
		case expr[j] == q && j+1 < len(expr) && expr[j+1] == q:
			j += 2
			continue
		case expr[j] == q:
			return j + 1
		}
		j++
	}
	return len(expr)
}

// dollarTag returns the $tag$ that s starts with, or "".
func dollarTag(s string) string {
	for j := 1; j < len(s); j++ {
		if s[j] == '$' {
			return s[:j+1]
		}
		if !isIdentPart(s[j]) || s[j] == '$' {
			return ""
		}
	}
	return ""
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') || c == '$' }
