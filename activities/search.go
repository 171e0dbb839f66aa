package activities

import (
	"context"
	"slices"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/activity"
)

// SearchAttributesAvailable reports whether the task's namespace has every named search attribute
// as a Keyword. It runs as a local activity.
func (a *Activities) SearchAttributesAvailable(ctx context.Context, names []string) (bool, error) {
	if a.Client == nil {
		return false, nil
	}
	// With payloads encrypted, search attributes (readable to anyone who can list workflows)
	// would show the servers: none are published.
	if a.EncryptedPayloads {
		return false, nil
	}
	resp, err := a.Client.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{
		Namespace: activity.GetInfo(ctx).WorkflowNamespace,
	})
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if t, ok := resp.CustomAttributes[n]; !ok || t != enums.INDEXED_VALUE_TYPE_KEYWORD {
			return false, nil
		}
	}
	return !slices.Contains(names, ""), nil
}
