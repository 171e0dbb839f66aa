package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/spec"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestColumnTypes moves an xml column as text (column_types: {x: text}), which is how a
// destination without libxml (the IvorySQL build here) takes it: schema, load and changes, then
// the mapped column renamed on the source keeps its mapped type; every row equal, and verify
// equal; into PostgreSQL and IvorySQL's Oracle port.
func TestColumnTypes(t *testing.T) {
	parallel(t)
	eachDestination(t, func(t *testing.T) {
		ctx := context.Background()
		srcPG, dstPG, src, dst := clusterPair(t, true, "docs", `CREATE SCHEMA s;
CREATE TABLE s.docs (id int PRIMARY KEY, x xml, n numeric(10,2));
INSERT INTO s.docs SELECT g, ('<a n="' || g || '">' || repeat('z', g % 50) || '</a>')::xml, g / 3.0 FROM generate_series(1, 3000) g`)
		c := startWorker(t, t.TempDir())
		s := spec.Spec{Name: "it-coltypes", Source: srcPG.Endpoint("docs"), Destination: dstPG.Endpoint("target"),
			Objects: []spec.Object{{Schema: "s", Tables: []spec.Table{{Name: "docs", ColumnTypes: map[string]string{"x": "text"}}}}}}
		run := startTask(t, c, s, nil)
		st := waitPhase(t, c, run.GetID(), api.PhaseIncremental, 3*time.Minute)
		require.Empty(t, st.LastError)
		var typ string
		require.NoError(t, dst.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 's.docs'::regclass AND attname = 'x'`).Scan(&typ))
		require.Equal(t, "text", typ)

		testharness.Exec(t, src, `INSERT INTO s.docs VALUES (5000, '<b>new</b>', 1.5);
UPDATE s.docs SET x = '<c>changed</c>' WHERE id <= 10;
DELETE FROM s.docs WHERE id BETWEEN 20 AND 25`)
		check := []tableCheck{{src: spec.QName{Schema: "s", Name: "docs"}, dst: spec.QName{Schema: "s", Name: "docs"},
			srcCols: []string{"id", "x", "n"}, srcKey: []string{"id"}}}
		testharness.Eventually(t, time.Minute, func() error { return compareAll(ctx, src, dst, check) })

		// The mapped column renamed on the source: its destination column follows, still text.
		testharness.Exec(t, src, `ALTER TABLE s.docs RENAME COLUMN x TO body`)
		testharness.Exec(t, src, `INSERT INTO s.docs VALUES (5001, '<d>after rename</d>', 2)`)
		check[0].srcCols, check[0].dstCols = []string{"id", "body", "n"}, []string{"id", "body", "n"}
		testharness.Eventually(t, time.Minute, func() error {
			if st := status(t, c, run.GetID()); st.LastError != "" {
				return fmt.Errorf("the task reports: %s", st.LastError)
			}
			return compareAll(ctx, src, dst, check)
		})
		require.NoError(t, dst.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 's.docs'::regclass AND attname = 'body'`).Scan(&typ))
		require.Equal(t, "text", typ)
		rep := verifyTask(t, c, run.GetID())
		require.True(t, rep.Equal, "%+v", rep.Tables)
	})
}
