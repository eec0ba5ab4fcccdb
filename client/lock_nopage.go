//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || (js && wasm))

package client

// pageLock: outside browsers, the process is the only user of its lock.
func pageLock(string) (func(), error) { return func() {}, nil }
