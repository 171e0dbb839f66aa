// Package workflows holds the SyncTask workflow: one sync task, from precheck through full load
// to incremental apply and release, and the Verify, Precheck, Release and SlotCheck workflows.
// Deterministic code only: every side effect is an activity. The names and payloads they answer
// to are pkg/api's.
package workflows
