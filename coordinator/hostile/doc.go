// Package hostile is the traffic of devices with valid certificates that
// attack a node: slow and lying uploads, junk frames, the bodies that
// decode to the most per byte, connection floods (Device.Run). The
// hostile-device tests of the coordinator (in process) and of the fedrec
// command (against a coordinator process) share it; docs/security.md,
// "Memory and upload capacity", states what it may cost a node (Bound).
//
// It speaks the wire protocol directly, never through the client SDK, so
// that it can send what no client would.
package hostile
