// Package deviceapi is a coordinator node's device-facing server: the
// client protocol's QUIC listener and the WebTransport listener for
// browsers, their connections (limits per device and for unauthenticated
// peers), the admission of every request before its body is read (memory
// budget, upload slots, per-device memory, uploads and request rate, the
// minimum transfer rate), the authentication of peers by certificate or
// device token, and the framing of one request per stream. Each admitted
// request goes to a Handler, the small interface this package defines and
// the coordinator's node implements; the server knows nothing of rounds.
//
// See ../DESIGN.md ("Storage and transport") and docs/security.md for
// what must stay true.
package deviceapi
