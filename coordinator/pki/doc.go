// Package pki makes and loads the certificates of a fedrec cluster: a
// development certificate authority, node certificates signed by it, and
// the TLS configurations built from them (mutual TLS between nodes, server
// TLS for the client protocol, client TLS for devices).
//
// Keys are ECDSA P-256. A node certificate is valid for both server and
// client authentication, with SANs for 127.0.0.1, ::1, localhost and the
// names given.
package pki
