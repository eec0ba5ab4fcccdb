// Package adminapi is a coordinator node's admin API: HTTPS with the
// node's certificate, the operator and read-only bearer tokens, the JSON
// of coordinator/wire (status, rounds, models, membership, training
// settings), backups and the Prometheus exposition. It serves a Node, the
// small interface it defines and the coordinator implements; it reads the
// replicated state through Node.View and changes nothing but through the
// Node's leader-only calls.
//
// The API's routes are listed in api.go; ../DESIGN.md says what must stay
// true.
package adminapi
