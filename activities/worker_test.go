package activities

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/skein-dts/skein/pkg/api"
)

// TestActivityNamesAreRegistered: the workflows run activities by the names in pkg/api, and the
// worker registers the methods of Activities under their own names: each name has its method.
func TestActivityNamesAreRegistered(t *testing.T) {
	typ := reflect.TypeOf(&Activities{})
	for _, name := range api.ActivityNames {
		_, ok := typ.MethodByName(name)
		require.True(t, ok, "api.Activity%s names no method of activities.Activities", name)
	}
}
