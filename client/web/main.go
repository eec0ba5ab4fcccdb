//go:build js && wasm

// Command web is the fedrec SDK compiled to WebAssembly for a shop's
// pages: it sets globalThis.fedrec, whose connect reaches the cluster
// over WebTransport (client.DialerConfig.Web) and downloads committed
// models. Build it with
//
//	GOOS=js GOARCH=wasm go build -o fedrec.wasm ./client/web
package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"syscall/js"

	"github.com/fedrec/fedrec/client"
)

func main() {
	js.Global().Set("fedrec", map[string]any{"connect": js.FuncOf(connect)})
	select {} // serve calls from the page
}

// connect({addrs: [...], token: async () => base64url string, certHashes:
// [hex, ...]}) returns a Promise of {model(): Promise<{version, items,
// rank}>, close()}.
func connect(_ js.Value, args []js.Value) any {
	return promise(func() (any, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("fedrec.connect: want one options object")
		}
		o := args[0]
		var addrs []string
		for i := range o.Get("addrs").Length() {
			addrs = append(addrs, o.Get("addrs").Index(i).String())
		}
		web := &client.WebOptions{Token: func(ctx context.Context) ([]byte, error) {
			v, err := awaitValue(o.Call("token"))
			if err != nil {
				return nil, err
			}
			return client.ParseDeviceToken(v.String())
		}}
		if hs := o.Get("certHashes"); !hs.IsUndefined() {
			for i := range hs.Length() {
				b, err := hex.DecodeString(hs.Index(i).String())
				if err != nil || len(b) != 32 {
					return nil, fmt.Errorf("fedrec.connect: certHashes[%d] is not a SHA-256 hash in hex", i)
				}
				web.CertHashes = append(web.CertHashes, [32]byte(b))
			}
		}
		d, err := client.NewDialerConfig(client.DialerConfig{Addrs: addrs, TLS: client.BrowserTLS(), Web: web})
		if err != nil {
			return nil, err
		}
		return map[string]any{
			"model": js.FuncOf(func(js.Value, []js.Value) any {
				return promise(func() (any, error) {
					m, v, err := d.Model(context.Background(), 0)
					if err != nil {
						return nil, err
					}
					return map[string]any{"version": v, "items": m.Items, "rank": m.Rank}, nil
				})
			}),
			"close": js.FuncOf(func(js.Value, []js.Value) any { d.Close(); return nil }),
		}, nil
	})
}

// promise runs f on its own goroutine and returns a Promise of its result.
func promise(f func() (any, error)) js.Value {
	var exec js.Func
	exec = js.FuncOf(func(_ js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer exec.Release()
			v, err := f()
			if err != nil {
				reject.Invoke(js.Global().Get("Error").New(err.Error()))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(exec)
}

// awaitValue waits for a value that may be a Promise.
func awaitValue(v js.Value) (js.Value, error) {
	if v.Type() != js.TypeObject || v.Get("then").Type() != js.TypeFunction {
		return v, nil
	}
	ch := make(chan js.Value, 1)
	errc := make(chan error, 1)
	var then, catch js.Func
	then = js.FuncOf(func(_ js.Value, a []js.Value) any { ch <- a[0]; then.Release(); catch.Release(); return nil })
	catch = js.FuncOf(func(_ js.Value, a []js.Value) any {
		errc <- fmt.Errorf("token: %s", a[0].String())
		then.Release()
		catch.Release()
		return nil
	})
	v.Call("then", then, catch)
	select {
	case r := <-ch:
		return r, nil
	case err := <-errc:
		return js.Undefined(), err
	}
}
