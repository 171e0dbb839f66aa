// Package cdc is the apply side of the change stream: it takes what the source side
// (pkg/cdc/source: the slot's protocol reader and decoding, the publication and slot
// administration) hands its Sink, and applies it to the destination with an exactly-once effect.
//
// Stream joins the two: source transactions are grouped into destination transactions
// (stream.go), each committed with the position it covers; rows go through one applier
// (dispatch.go: describe, row, change) into batched statements (batch.go, keyed.go), on one
// session or over several lanes (lanes.go, parallel.go); schema changes are applied in their
// place in the stream (schema_change.go).
package cdc
