package catalog

import (
	"context"
	"fmt"
	"strings"
)

// Object kinds of operator families and classes and of text search, read by LoadObjects for
// whole schemas (created before the tables: indexes, defaults and generated columns use them).
const (
	KindOpFamily     = "operator family"
	KindOpClass      = "operator class"
	KindTSDictionary = "text search dictionary"
	KindTSConfig     = "text search configuration"
)

// CatalogOf is the system catalog that holds objects of kind (Ref.Catalog).
func CatalogOf(kind string) string {
	switch kind {
	case KindFunction, KindAggregate:
		return CatalogProc
	case KindOperator:
		return CatalogOperator
	case KindOpFamily:
		return "pg_opfamily"
	case KindOpClass:
		return "pg_opclass"
	case KindTSDictionary:
		return "pg_ts_dict"
	case KindTSConfig:
		return "pg_ts_config"
	}
	return CatalogClass
}

// opfamilySQL deparses the operator families of schema $1 as pg_dump does: CREATE OPERATOR
// FAMILY, then the members that belong to the family and to none of its classes. Names are
// printed with the search path set to the schema.
const opfamilySQL = `
SELECT f.oid, f.opfname::text, am.amname::text,
       pg_catalog.format('CREATE OPERATOR FAMILY %I.%I USING %I', n.nspname, f.opfname, am.amname),
       ARRAY(SELECT pg_catalog.format('ALTER OPERATOR FAMILY %I.%I USING %I ADD %s', n.nspname, f.opfname, am.amname, pg_catalog.string_agg(m, ', ' ORDER BY k, n))
             FROM (SELECT 1 AS k, ao.amopstrategy AS n,
                          pg_catalog.format('OPERATOR %s %s', ao.amopstrategy, ao.amopopr::pg_catalog.regoperator)
                          || CASE WHEN ao.amoppurpose = 'o' THEN ' FOR ORDER BY ' || (SELECT pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(sf.opfname)
                               FROM pg_catalog.pg_opfamily sf JOIN pg_catalog.pg_namespace sn ON sn.oid = sf.opfnamespace WHERE sf.oid = ao.amopsortfamily) ELSE '' END AS m
                   FROM pg_catalog.pg_amop ao JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amop'::pg_catalog.regclass AND d.objid = ao.oid
                     AND d.refclassid = 'pg_catalog.pg_opfamily'::pg_catalog.regclass AND d.refobjid = f.oid
                   WHERE ao.amopfamily = f.oid
                   UNION ALL
                   SELECT 2, ap.amprocnum, pg_catalog.format('FUNCTION %s (%s, %s) %s', ap.amprocnum, pg_catalog.format_type(ap.amproclefttype, NULL),
                          pg_catalog.format_type(ap.amprocrighttype, NULL), ap.amproc::pg_catalog.regprocedure)
                   FROM pg_catalog.pg_amproc ap JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amproc'::pg_catalog.regclass AND d.objid = ap.oid
                     AND d.refclassid = 'pg_catalog.pg_opfamily'::pg_catalog.regclass AND d.refobjid = f.oid
                   WHERE ap.amprocfamily = f.oid) members
             HAVING pg_catalog.count(*) > 0)
FROM pg_catalog.pg_opfamily f JOIN pg_catalog.pg_am am ON am.oid = f.opfmethod
JOIN pg_catalog.pg_namespace n ON n.oid = f.opfnamespace
WHERE n.nspname = $1 AND {{not-extension-member}}
ORDER BY f.opfname, am.amname`

// opclassSQL deparses the operator classes of schema $1 as pg_dump does.
const opclassSQL = `
SELECT c.oid, c.opcname::text, am.amname::text,
       pg_catalog.format('CREATE OPERATOR CLASS %I.%I%s FOR TYPE %s USING %I FAMILY %s AS %s', n.nspname, c.opcname,
         CASE WHEN c.opcdefault THEN ' DEFAULT' ELSE '' END, pg_catalog.format_type(c.opcintype, NULL), am.amname,
         (SELECT pg_catalog.quote_ident(fn.nspname) || '.' || pg_catalog.quote_ident(f.opfname) FROM pg_catalog.pg_opfamily f
          JOIN pg_catalog.pg_namespace fn ON fn.oid = f.opfnamespace WHERE f.oid = c.opcfamily),
         COALESCE((SELECT pg_catalog.string_agg(m, ', ' ORDER BY k, n) FROM (
           SELECT 1 AS k, ao.amopstrategy AS n,
                  pg_catalog.format('OPERATOR %s %s', ao.amopstrategy, ao.amopopr::pg_catalog.regoperator)
                  || CASE WHEN ao.amoppurpose = 'o' THEN ' FOR ORDER BY ' || (SELECT pg_catalog.quote_ident(sn.nspname) || '.' || pg_catalog.quote_ident(sf.opfname)
                       FROM pg_catalog.pg_opfamily sf JOIN pg_catalog.pg_namespace sn ON sn.oid = sf.opfnamespace WHERE sf.oid = ao.amopsortfamily) ELSE '' END AS m
           FROM pg_catalog.pg_amop ao JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amop'::pg_catalog.regclass AND d.objid = ao.oid
             AND d.refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.refobjid = c.oid
           UNION ALL
           SELECT 2, ap.amprocnum,
                  pg_catalog.format('FUNCTION %s %s%s', ap.amprocnum,
                    CASE WHEN ap.amproclefttype <> c.opcintype OR ap.amprocrighttype <> c.opcintype
                         THEN pg_catalog.format('(%s, %s) ', pg_catalog.format_type(ap.amproclefttype, NULL), pg_catalog.format_type(ap.amprocrighttype, NULL)) ELSE '' END,
                    ap.amproc::pg_catalog.regprocedure)
           FROM pg_catalog.pg_amproc ap JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_amproc'::pg_catalog.regclass AND d.objid = ap.oid
             AND d.refclassid = 'pg_catalog.pg_opclass'::pg_catalog.regclass AND d.refobjid = c.oid
           UNION ALL
           SELECT 3, 0, 'STORAGE ' || pg_catalog.format_type(c.opckeytype, NULL) WHERE c.opckeytype <> 0) members),
           'STORAGE ' || pg_catalog.format_type(c.opcintype, NULL))),
       '{}'::pg_catalog.text[]
FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_am am ON am.oid = c.opcmethod
JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace
WHERE n.nspname = $1 AND {{not-extension-member}}
ORDER BY c.opcname, am.amname`

// tsDictionarySQL deparses the text search dictionaries of schema $1.
const tsDictionarySQL = `
SELECT td.oid, td.dictname::text, '',
       pg_catalog.format('CREATE TEXT SEARCH DICTIONARY %I.%I (TEMPLATE = %s%s)', n.nspname, td.dictname,
         pg_catalog.quote_ident(tn.nspname) || '.' || pg_catalog.quote_ident(t.tmplname),
         COALESCE(', ' || td.dictinitoption, '')),
       '{}'::pg_catalog.text[]
FROM pg_catalog.pg_ts_dict td JOIN pg_catalog.pg_namespace n ON n.oid = td.dictnamespace
JOIN pg_catalog.pg_ts_template t ON t.oid = td.dicttemplate JOIN pg_catalog.pg_namespace tn ON tn.oid = t.tmplnamespace
WHERE n.nspname = $1 AND {{not-extension-member}}
ORDER BY td.dictname`

// tsConfigSQL deparses the text search configurations of schema $1 with their mappings.
const tsConfigSQL = `
SELECT c.oid, c.cfgname::text, '',
       pg_catalog.format('CREATE TEXT SEARCH CONFIGURATION %I.%I (PARSER = %s)', n.nspname, c.cfgname,
         pg_catalog.quote_ident(pn.nspname) || '.' || pg_catalog.quote_ident(p.prsname)),
       ARRAY(SELECT pg_catalog.format('ALTER TEXT SEARCH CONFIGURATION %I.%I ADD MAPPING FOR %I WITH %s', n.nspname, c.cfgname, tt.alias,
                      pg_catalog.string_agg(m.mapdict::pg_catalog.regdictionary::pg_catalog.text, ', ' ORDER BY m.mapseqno))
             FROM pg_catalog.pg_ts_config_map m JOIN pg_catalog.ts_token_type(c.cfgparser) tt ON tt.tokid = m.maptokentype
             WHERE m.mapcfg = c.oid GROUP BY tt.alias, m.maptokentype ORDER BY m.maptokentype)
FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
JOIN pg_catalog.pg_ts_parser p ON p.oid = c.cfgparser JOIN pg_catalog.pg_namespace pn ON pn.oid = p.prsnamespace
WHERE n.nspname = $1 AND {{not-extension-member}}
ORDER BY c.cfgname`

// loadDeparsed reads operator families and classes and text search dictionaries and
// configurations of schema: Def is the CREATE statement, More what follows it. Call with the
// search path set to schema: the objects' own names are qualified (the destination's search
// path starts with pg_catalog, where an unqualified CREATE would land), the names they use only
// where the search path needs it.
func loadDeparsed(ctx context.Context, q Querier, schema string) ([]Object, error) {
	var out []Object
	for _, k := range []struct{ what, sql, oid string }{
		{"operator families", opfamilySQL, "f.oid"}, {"operator classes", opclassSQL, "c.oid"},
		{"text search dictionaries", tsDictionarySQL, "td.oid"}, {"text search configurations", tsConfigSQL, "c.oid"},
	} {
		kind := map[string]string{"operator families": KindOpFamily, "operator classes": KindOpClass,
			"text search dictionaries": KindTSDictionary, "text search configurations": KindTSConfig}[k.what]
		// (The queries hold format() patterns: no fmt.Sprintf over them.)
		sql := strings.Replace(k.sql, "{{not-extension-member}}", fmt.Sprintf(notExtensionMember, k.oid, CatalogOf(kind)), 1)
		rows, err := q.Query(ctx, sql, schema)
		if err != nil {
			return nil, fmt.Errorf("list the %s of %s: %w", k.what, schema, err)
		}
		for rows.Next() {
			o := Object{Kind: kind}
			o.Name.Schema = schema
			if err := rows.Scan(&o.OID, &o.Name.Name, &o.Args, &o.Def, &o.More); err != nil {
				rows.Close()
				return nil, fmt.Errorf("list the %s of %s: %w", k.what, schema, err)
			}
			out = append(out, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("list the %s of %s: %w", k.what, schema, err)
		}
	}
	return out, nil
}
