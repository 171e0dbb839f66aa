package redact

import "context"

type valuesShownKey struct{}

// ShowValues returns a context under which TextFor keeps row values: the spec's
// show_row_values, for test systems whose operators need the server's whole text.
func ShowValues(ctx context.Context) context.Context {
	return context.WithValue(ctx, valuesShownKey{}, true)
}

// ValuesShown reports whether ctx came from ShowValues.
func ValuesShown(ctx context.Context) bool {
	shown, _ := ctx.Value(valuesShownKey{}).(bool)
	return shown
}

// TextFor is Text, or err's whole text under a context from ShowValues.
func TextFor(ctx context.Context, err error) string {
	if err != nil && ValuesShown(ctx) {
		return err.Error()
	}
	return Text(err)
}
