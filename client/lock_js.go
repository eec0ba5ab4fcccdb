//go:build js && wasm

package client

import (
	"fmt"
	"sync"
)

// dirLock, in a browser, locks a database against other Clients of this
// page (the WebAssembly module's instance). Pages in other tabs are not
// kept out: a shop opens the SDK from one page at a time.
type dirLock struct{ name string }

var locked sync.Map // database name → struct{}

func lockDir(name string) (*dirLock, error) {
	if _, busy := locked.LoadOrStore(name, struct{}{}); busy {
		return nil, fmt.Errorf("%w: %s", ErrLocked, name)
	}
	return &dirLock{name: name}, nil
}

func (l *dirLock) unlock() error {
	if l != nil && l.name != "" {
		locked.Delete(l.name)
		l.name = ""
	}
	return nil
}
