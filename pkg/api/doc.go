// Package api holds the contracts of a sync task and nothing else: the names of its task queue,
// workflows, queries, signals and updates, the status it answers, and the results its parts
// report (changes applied, precheck items, verification results, what schema sync did). The CLI,
// the workflows and the activities share these types; it imports only pkg/spec.
package api
