// Package store is the coordinator's replicated state and its storage:
// State (the training configuration, the committed models, the optimizer's
// moments, the round history, the privacy ledger and the open round) with
// its deterministic Apply of log commands; FSM, the thin raft.FSM adapter
// that decodes committed entries, snapshots and restores; the versioned
// snapshot format; and BoltStore, the Raft log and stable store in one
// bbolt file. It knows nothing of devices, rounds in progress or the admin
// API: the coordinator's node drives Raft over it and reads the state
// through FSM.Read and FSM.Watch.
//
// See ../DESIGN.md, "Replicated state", for what must stay true.
package store
