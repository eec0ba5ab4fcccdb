//go:build js && wasm

package client

import (
	"fmt"
	"syscall/js"
)

// pageLock takes the Web Lock "fedrec:<name>" if no other page of the
// site holds it (a second tab of the shop): two pages appending to one
// database's log would overwrite each other's records. The browser
// releases it when the page goes; the returned func releases it sooner.
// Without the Web Locks API, only the page's own Clients are kept out.
func pageLock(name string) (func(), error) {
	locks := js.Global().Get("navigator").Get("locks")
	if locks.IsUndefined() {
		return func() {}, nil
	}
	got := make(chan js.Value, 1) // the lock's release, or null if taken
	var cb js.Func
	cb = js.FuncOf(func(_ js.Value, args []js.Value) any {
		cb.Release()
		if arg0(args).IsNull() {
			got <- js.Null()
			return nil
		}
		// The lock is held until this promise resolves.
		var exec js.Func
		exec = js.FuncOf(func(_ js.Value, a []js.Value) any {
			exec.Release()
			got <- a[0]
			return nil
		})
		return js.Global().Get("Promise").New(exec)
	})
	if err := catchJS(func() {
		locks.Call("request", "fedrec:"+name, map[string]any{"ifAvailable": true}, cb)
	}); err != nil {
		cb.Release()
		return nil, fmt.Errorf("client: lock %s: %w", name, err)
	}
	release := <-got
	if release.IsNull() {
		return nil, fmt.Errorf("%w: %s (open in another tab)", ErrLocked, name)
	}
	return func() { release.Invoke() }, nil
}
