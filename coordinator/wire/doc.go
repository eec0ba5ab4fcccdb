// Package wire defines every byte that fedrec puts on the network or in its
// Raft log: the protocol version and ALPN, the message types, the framing
// with its per-type size limits, the error codes, the one msgpack
// configuration, the Raft log command envelope, the snapshot records, the
// QUIC and TLS settings both ends use, and the admin API's JSON bodies.
//
// It is the only package that imports msgpack. Wire structs are not domain
// structs: conversions to and from model.Model validate shapes, sizes and
// finiteness at the boundary, so that untrusted bytes never reach the math.
// Every decoder first checks the frame length against the type's limit and
// then runs a structural pre-check of the msgpack bytes (declared lengths
// bounded by the bytes present, nesting bounded) before msgpack sees them.
//
// See DESIGN.md for what must stay true.
package wire
