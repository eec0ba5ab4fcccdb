// Package round is a device's side of a federated round on the wire: the
// requests (check in, download a model, upload an update) and the driver
// of a secure round. The SDK (package client) and the simulator's crowds
// (client/crowd) both take part in rounds through it, over a client.Dialer.
package round
