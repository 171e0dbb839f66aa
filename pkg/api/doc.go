// Package api holds the contracts of a sync task and nothing else: the names of its task queue,
// workflows, activities, queries, signals and updates; the status it answers; the inputs and
// results of its activities (chunks, snapshots, slot state, precheck items, verification results,
// what schema sync did, apply and verify progress, alerts) and the retry classes of their errors.
// The CLI and the workflows import only this package and pkg/spec; the activities and the
// implementation packages produce these types (they alias them).
package api
