package coordinator

import "github.com/fedrec/fedrec/coordinator/store/storetest"

// The replicated state's fixtures (package storetest), under the names the
// coordinator's tests use.
var (
	testTraining = storetest.Training
	initCommands = storetest.InitCommands
	fsmApply     = storetest.Apply
	commitFor    = storetest.CommitFor
	openFor      = storetest.OpenFor
	newFSM       = storetest.NewFSM
	history      = storetest.History
)
