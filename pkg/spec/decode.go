package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
)

// A spec reaches Skein two ways: `skein start` parses YAML (Parse), and the Temporal CLI or any
// client starts SyncTask with JSON that the SDK decodes with encoding/json. Both go through
// Spec.UnmarshalJSON, so both reject the same things by the same names: unknown fields, values
// of the wrong type, explicit zeros of fields whose zero is not valid.

// specFields is Spec without its methods: what UnmarshalJSON decodes into.
type specFields Spec

// UnmarshalJSON decodes a spec leniently and keeps what does not fit (unknown fields, wrong
// types, explicit zeros) for Validate to report by field. It fails only on malformed JSON: a
// workflow whose input cannot be decoded at all cannot even report why.
func (s *Spec) UnmarshalJSON(data []byte) error {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("spec: not valid JSON: %w", err)
	}
	var f specFields
	errs := fieldProblems(doc, reflect.TypeFor[Spec](), "")
	if len(errs) == 0 {
		errs = explicitZeros(data)
	}
	_ = json.Unmarshal(data, &f) // wrong types are in errs, with their field names
	*s = Spec(f)
	s.inputErrs = errs
	return nil
}

// decodeObjects decodes an objects list (a bare list, or a document with an objects key),
// naming each field that does not fit.
func decodeObjects(js []byte) ([]Object, error) {
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("objects: not valid JSON: %w", err)
	}
	var objs []Object
	if m, isDoc := doc.(map[string]any); isDoc {
		var wrapper struct {
			Objects []Object `json:"objects"`
		}
		if errs := fieldProblems(m, reflect.TypeOf(wrapper), ""); len(errs) > 0 {
			return nil, errs
		}
		if err := json.Unmarshal(js, &wrapper); err != nil {
			return nil, fmt.Errorf("objects: %w", err)
		}
		return wrapper.Objects, nil
	}
	if errs := fieldProblems(doc, reflect.TypeOf(objs), "objects"); len(errs) > 0 {
		return nil, errs
	}
	if err := json.NewDecoder(bytes.NewReader(js)).Decode(&objs); err != nil {
		return nil, fmt.Errorf("objects: %w", err)
	}
	return objs, nil
}

// fieldProblems walks a decoded JSON value against the Go type it is meant for and names every
// field that is not one of the type's (JSON names match exactly: TASKSPEC's names are lower
// case) and every value of the wrong kind. null fits anything: the field keeps its zero.
func fieldProblems(v any, t reflect.Type, path string) Errors {
	var errs Errors
	walkFields(v, t, path, &errs)
	return errs
}

func walkFields(v any, t reflect.Type, path string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v == nil {
		return
	}
	at := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	wrong := func(want string) {
		errs.add(orTop(path), "expected %s, got %s", want, jsonKind(v))
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			wrong("a mapping of fields")
			return
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			ft, known := fields[k]
			if !known {
				errs.add(at(k), "unknown field: remove it or check its spelling (see TASKSPEC.md)")
				continue
			}
			walkFields(m[k], ft, at(k), errs)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			wrong("a mapping")
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			walkFields(m[k], t.Elem(), at(k), errs)
		}
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			wrong("a list")
			return
		}
		for i, e := range a {
			walkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			wrong("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			wrong("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			wrong("a whole number")
		}
	}
}

func orTop(path string) string {
	if path == "" {
		return "spec"
	}
	return path
}

// jsonKind names the kind of a decoded JSON value as a person writing YAML or JSON sees it.
func jsonKind(v any) string {
	switch x := v.(type) {
	case string:
		return "a string" // its text stays out of errors: a misplaced secret must not show
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return fmt.Sprintf("%v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// jsonFields maps the JSON names of a struct's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
