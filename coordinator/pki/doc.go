// Package pki makes and loads the certificates of a fedrec cluster: a
// development cluster CA and node certificates signed by it, a device CA
// and device certificates, the deny-list of revoked devices, and the TLS
// configurations built from them (mutual TLS between nodes, server TLS for
// the client protocol, client TLS for devices).
//
// Keys are ECDSA P-256. A node certificate is valid for both server and
// client authentication, with SANs for 127.0.0.1, ::1, localhost and the
// names given. A device certificate is valid for client authentication
// only and names its device's client ID as common name; in production the
// device CA's key stays with the app's backend, which issues short-lived
// device certificates. docs/security.md describes rotation and revocation.
package pki
