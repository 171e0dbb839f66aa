package activities

import (
	"context"
	"reflect"

	"go.temporal.io/sdk/interceptor"

	"github.com/skein-dts/skein/pkg/redact"
	"github.com/skein-dts/skein/pkg/spec"
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
		if s, ok := specIn(arg); ok && s.ShowRowValues {
			ctx = redact.ShowValues(ctx)
			break
		}
	}
	return a.Next.ExecuteActivity(ctx, in)
}

var specType = reflect.TypeOf(spec.Spec{})

// specIn finds the spec an activity's argument is or holds as a field.
func specIn(arg any) (spec.Spec, bool) {
	v := reflect.ValueOf(arg)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return spec.Spec{}, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return spec.Spec{}, false
	}
	if v.Type() == specType {
		return v.Interface().(spec.Spec), true
	}
	for i := range v.NumField() {
		if f := v.Field(i); f.Type() == specType && v.Type().Field(i).IsExported() {
			return f.Interface().(spec.Spec), true
		}
	}
	return spec.Spec{}, false
}
