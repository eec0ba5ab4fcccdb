//go:build js && wasm

package client

import (
	"errors"
	"fmt"
	"syscall/js"
	"time"
)

// pageLock takes the Web Lock "fedrec:<name>", which one page of the site
// holds at a time: two pages appending to one database's log would
// overwrite each other's records. The browser releases it when the page
// goes (the page before a navigation may still hold it for a moment, so
// pageLock waits up to pageLockWait for it); the returned func releases it
// sooner. Without the Web Locks API, only the page's own Clients are kept
// out.
func pageLock(name string) (func(), error) {
	locks := js.Global().Get("navigator").Get("locks")
	if locks.IsUndefined() {
		return func() {}, nil
	}
	got := make(chan js.Value, 1) // the lock's release
	failed := make(chan error, 1)
	var cb, catch js.Func
	cb = js.FuncOf(func(js.Value, []js.Value) any {
		// The lock is held until this promise resolves.
		var exec js.Func
		exec = js.FuncOf(func(_ js.Value, a []js.Value) any {
			exec.Release()
			got <- a[0]
			return nil
		})
		return js.Global().Get("Promise").New(exec)
	})
	catch = js.FuncOf(func(_ js.Value, a []js.Value) any {
		failed <- jsError(arg0(a))
		return nil
	})
	err := catchJS(func() {
		opts := map[string]any{"signal": js.Global().Get("AbortSignal").Call("timeout", pageLockWait.Milliseconds())}
		locks.Call("request", "fedrec:"+name, opts, cb).Call("catch", catch)
	})
	if err != nil {
		cb.Release()
		catch.Release()
		return nil, fmt.Errorf("client: lock %s: %w", name, err)
	}
	select {
	case release := <-got:
		return func() {
			release.Invoke()
			cb.Release()
			catch.Release()
		}, nil
	case err := <-failed:
		cb.Release()
		catch.Release()
		var de *domError
		if errors.As(err, &de) && (de.name == "TimeoutError" || de.name == "AbortError") {
			return nil, fmt.Errorf("%w: %s (open in another tab)", ErrLocked, name)
		}
		return nil, fmt.Errorf("client: lock %s: %w", name, err)
	}
}

// pageLockWait bounds how long New waits for another page to release the
// database.
const pageLockWait = 3 * time.Second
