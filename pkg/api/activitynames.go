package api

// Names of the activities the workflows run: the worker registers the methods of
// activities.Activities under their own names (activities tests that each exists).
const (
	ActivityAlert                     = "Alert"
	ActivityApply                     = "Apply"
	ActivityBuildTables               = "BuildTables"
	ActivityCopyChunk                 = "CopyChunk"
	ActivityCopyChunks                = "CopyChunks"
	ActivityCopyChunksAndBuild        = "CopyChunksAndBuild"
	ActivityDescribeTask              = "DescribeTask"
	ActivityEndSnapshot               = "EndSnapshot"
	ActivityEnsureBookkeeping         = "EnsureBookkeeping"
	ActivityHoldSnapshot              = "HoldSnapshot"
	ActivityOpenSnapshot              = "OpenSnapshot"
	ActivityPlanLoad                  = "PlanLoad"
	ActivityPrecheck                  = "Precheck"
	ActivityPreparePublication        = "PreparePublication"
	ActivityRelease                   = "Release"
	ActivityRepair                    = "Repair"
	ActivityResetLoad                 = "ResetLoad"
	ActivityResolveTables             = "ResolveTables"
	ActivitySchemaPostData            = "SchemaPostData"
	ActivitySchemaPreData             = "SchemaPreData"
	ActivitySearchAttributesAvailable = "SearchAttributesAvailable"
	ActivitySlotState                 = "SlotState"
	ActivitySourcePosition            = "SourcePosition"
	ActivitySyncSequences             = "SyncSequences"
	ActivityTaskRunning               = "TaskRunning"
	ActivityVerify                    = "Verify"
	ActivityVerifyTask                = "VerifyTask"
)

// ActivityNames lists every activity name above.
var ActivityNames = []string{ActivityAlert, ActivityApply, ActivityBuildTables, ActivityCopyChunk, ActivityCopyChunks, ActivityCopyChunksAndBuild, ActivityDescribeTask, ActivityEndSnapshot, ActivityEnsureBookkeeping, ActivityHoldSnapshot, ActivityOpenSnapshot, ActivityPlanLoad, ActivityPrecheck, ActivityPreparePublication, ActivityRelease, ActivityRepair, ActivityResetLoad, ActivityResolveTables, ActivitySchemaPostData, ActivitySchemaPreData, ActivitySearchAttributesAvailable, ActivitySlotState, ActivitySourcePosition, ActivitySyncSequences, ActivityTaskRunning, ActivityVerify, ActivityVerifyTask}
