//go:build js && wasm

package client

import (
	"context"
	"fmt"
	"sync"
	"syscall/js"
)

// Calls into the browser's asynchronous APIs (WebTransport, IndexedDB,
// WebCrypto) wait on a channel that a JavaScript callback fills: the
// calling goroutine blocks, never the JavaScript event loop, which must
// stay free to run that callback. So these run on goroutines of their own,
// not inside a js.FuncOf callback.

// await waits for a promise to settle or ctx to end. Its callbacks
// release themselves when the promise settles, even after ctx ended.
func await(ctx context.Context, p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var then, catch js.Func
	var once sync.Once
	release := func() { once.Do(func() { then.Release(); catch.Release() }) }
	then = js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- result{v: arg0(args)}
		release()
		return nil
	})
	catch = js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- result{err: jsError(arg0(args))}
		release()
		return nil
	})
	if err := catchJS(func() { p.Call("then", then, catch) }); err != nil {
		release()
		return js.Undefined(), err
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return js.Undefined(), ctx.Err()
	}
}

func arg0(args []js.Value) js.Value {
	if len(args) == 0 {
		return js.Undefined()
	}
	return args[0]
}

// domError is a JavaScript error (a DOMException, a TypeError): its name
// says which ("OperationError", "QuotaExceededError", ...).
type domError struct{ name, msg string }

func (e *domError) Error() string { return e.name + ": " + e.msg }

// jsError turns a rejection's reason or an exception into an error.
func jsError(v js.Value) error {
	if v.Type() == js.TypeObject && !v.Get("message").IsUndefined() {
		return &domError{name: v.Get("name").String(), msg: v.Get("message").String()}
	}
	return fmt.Errorf("javascript: %s", v.String())
}

// catchJS runs f, turning a JavaScript exception into an error.
func catchJS(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(js.Error); ok {
				err = jsError(e.Value)
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

// jsBytes copies b into a new Uint8Array.
func jsBytes(b []byte) js.Value {
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	return u
}

// goBytes copies a Uint8Array or an ArrayBuffer into a new slice.
func goBytes(v js.Value) []byte {
	if v.InstanceOf(js.Global().Get("ArrayBuffer")) {
		v = js.Global().Get("Uint8Array").New(v)
	}
	b := make([]byte, v.Get("byteLength").Int())
	js.CopyBytesToGo(b, v)
	return b
}
