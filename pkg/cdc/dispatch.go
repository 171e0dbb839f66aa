package cdc

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
)

// The applier's entry points: every message the apply takes, on one session or in a lane,
// reaches the destination through these three.

// describe takes a relation description: what was derived from the relation's previous one is
// dropped (forgetRelation), and a relation the task let skip is decided again.
func (a *applier) describe(ctx context.Context, m *pglogrepl.RelationMessage) error {
	if err := a.forgetRelation(ctx, m.RelationID, m); err != nil {
		return err
	}
	a.relations[m.RelationID] = m
	delete(a.skipped, m.RelationID)
	return nil
}

// row applies an insert, update or delete.
func (a *applier) row(ctx context.Context, m pglogrepl.Message) error {
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		return a.insert(ctx, m)
	case *pglogrepl.UpdateMessage:
		return a.update(ctx, m)
	case *pglogrepl.DeleteMessage:
		return a.delete(ctx, m)
	}
	return fmt.Errorf("internal: %T is not a row change", m)
}

// change applies a truncate or a schema-change event.
func (a *applier) change(ctx context.Context, m pglogrepl.Message) error {
	switch m := m.(type) {
	case *pglogrepl.TruncateMessage:
		return a.truncate(ctx, m)
	case *pglogrepl.LogicalDecodingMessage:
		return a.schemaChange(ctx, m.Content)
	}
	return fmt.Errorf("internal: %T is not a change the apply takes", m)
}
