package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/spec"
)

func TestDiffTables(t *testing.T) {
	tm := func(name, to string) spec.TableMap {
		return spec.TableMap{Source: spec.QName{Schema: "s", Name: name}, Dest: spec.QName{Schema: "s", Name: to}, Operations: spec.AllOperations}
	}
	tests := []struct {
		name             string
		before, after    []spec.TableMap
		added, removed   []string
		wantErrSubstring string
	}{
		{"nothing changes", []spec.TableMap{tm("a", "a")}, []spec.TableMap{tm("a", "a")}, nil, nil, ""},
		{"add and remove", []spec.TableMap{tm("a", "a"), tm("b", "b")}, []spec.TableMap{tm("a", "a"), tm("c", "c")}, []string{"s.c"}, []string{"s.b"}, ""},
		{"a changed mapping is refused", []spec.TableMap{tm("a", "a")}, []spec.TableMap{tm("a", "a2")}, nil, nil, "table s.a: its mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			added, removed, err := diffTables(tt.before, tt.after)
			if tt.wantErrSubstring != "" {
				require.ErrorContains(t, err, tt.wantErrSubstring)
				return
			}
			require.NoError(t, err)
			names := func(ts []spec.TableMap) []string {
				var out []string
				for _, t := range ts {
					out = append(out, t.Source.String())
				}
				return out
			}
			require.Equal(t, tt.added, names(added))
			require.Equal(t, tt.removed, names(removed))
		})
	}
}
