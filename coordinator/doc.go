// Package coordinator is a fedrec coordinator node: a member of a Raft
// cluster (hashicorp/raft, with a bbolt file as log and stable store, file
// snapshots, and Raft traffic over mutual TLS) whose replicated state holds
// the configuration, the committed models, the server optimizer's state,
// the round history and the privacy ledger. Every node serves devices: it
// holds their check-ins, selects its share of each cohort, collects their
// uploads and serves committed models; the leader owns the round and adds
// the nodes' partial sums. Clients talk to nodes over QUIC with the
// protocol of package coordinator/wire.
//
// Each role has its package: the replicated state, its Raft FSM and its
// log store are coordinator/store; the device-facing server (listeners,
// admission, authentication) is coordinator/deviceapi; the operators'
// HTTPS API is coordinator/adminapi. This package is the node: it runs
// Raft over the store, owns the rounds, and implements deviceapi.Handler
// and adminapi.Node.
//
// See DESIGN.md for what must stay true.
package coordinator
