package activities

import (
	"context"
	"reflect"

	"go.temporal.io/sdk/interceptor"

	"github.com/skein-dts/skein/pkg/redact"
)

// RowValuesInterceptor runs each activity whose input carries a spec with show_row_values under
// redact.ShowValues, so its errors keep the values servers report. Every other activity's errors
// are redacted.
type RowValuesInterceptor struct {
	interceptor.WorkerInterceptorBase
}

// InterceptActivity implements interceptor.WorkerInterceptor.
func (*RowValuesInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &rowValuesActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}}
}

type rowValuesActivity struct {
	interceptor.ActivityInboundInterceptorBase
}

func (a *rowValuesActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	for _, arg := range in.Args {
		if showsRowValues(reflect.ValueOf(arg), 2) {
			ctx = redact.ShowValues(ctx)
			break
		}
	}
	return a.Next.ExecuteActivity(ctx, in)
}

// rowValuesShower is an input part that tells whether the task shows row values: the spec
// (show_row_values), or what a chunk copy carries of it (api.CopyTask).
type rowValuesShower interface{ ShowsRowValues() bool }

// showsRowValues finds a rowValuesShower in an activity's argument: the argument itself, or its
// exported fields, depth levels down.
func showsRowValues(v reflect.Value, depth int) bool {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return false
	}
	if v.CanInterface() {
		if s, ok := v.Interface().(rowValuesShower); ok {
			return s.ShowsRowValues()
		}
	}
	if depth == 0 {
		return false
	}
	for i := range v.NumField() {
		if v.Type().Field(i).IsExported() && showsRowValues(v.Field(i), depth-1) {
			return true
		}
	}
	return false
}
