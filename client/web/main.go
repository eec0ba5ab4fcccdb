//go:build js && wasm

// Command web is the fedrec SDK compiled to WebAssembly for a shop's
// pages: the same package client as in apps (store, recommendations,
// consent, policy, ledger, report), keeping its data in IndexedDB and
// reaching the cluster over WebTransport. fedrec.js loads it and wraps
// what it sets, globalThis.fedrec, in the API of fedrec.d.ts; build both
// into this directory with
//
//	make web
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall/js"
	"time"

	"github.com/fedrec/fedrec/client"
	"github.com/fedrec/fedrec/client/mobile"
	"github.com/fedrec/fedrec/coordinator/wire"
)

func main() {
	js.Global().Set("fedrec", map[string]any{"open": js.FuncOf(open), "remove": js.FuncOf(remove)})
	select {} // serve calls from the page
}

// kinds are the interactions a page records, by name.
var kinds = map[string]client.Kind{"view": client.View, "click": client.Click, "cart": client.Cart, "purchase": client.Purchase}

// device is an open Client and its network side.
type device struct {
	c   *client.Client
	fed client.Federation // nil without addrs

	base   context.Context // ends with close
	cancel context.CancelFunc
}

// open(options) opens the store and returns a Promise of the device's
// methods; options as fedrec.d.ts's OpenOptions, checked by fedrec.js.
func open(_ js.Value, args []js.Value) any {
	return promise(func() (any, error) {
		if len(args) != 1 || args[0].Type() != js.TypeObject {
			return nil, fmt.Errorf("%w: fedrec.open: want one options object", client.ErrInvalidArgument)
		}
		d, err := openDevice(args[0])
		if err != nil {
			return nil, err
		}
		return d.methods(), nil
	})
}

// remove(db) deletes a store that open refuses ("corrupt", "wrong_key"),
// to start over: client.Reset, which refuses a database a device has open.
func remove(_ js.Value, args []js.Value) any {
	return promise(func() (any, error) {
		if len(args) != 1 || args[0].Type() != js.TypeString {
			return nil, fmt.Errorf("%w: fedrec.remove: want the database name", client.ErrInvalidArgument)
		}
		return nil, client.Reset(args[0].String(), nil)
	})
}

func openDevice(o js.Value) (*device, error) {
	cfg := client.Config{Dir: str(o.Get("db"), "fedrec")}
	if o.Get("debug").Truthy() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var err error
	if cfg.Policy, err = policy(o.Get("policy")); err != nil {
		return nil, err
	}
	if k := o.Get("key"); k.Truthy() {
		// The page's own 32-byte key (Uint8Array) instead of the
		// WebCrypto key the SDK keeps. CopyBytesToGo panics on anything
		// else.
		if !k.InstanceOf(js.Global().Get("Uint8Array")) {
			return nil, fmt.Errorf("%w: key: want a Uint8Array", client.ErrInvalidArgument)
		}
		cfg.Key = make([]byte, k.Get("byteLength").Int())
		js.CopyBytesToGo(cfg.Key, k)
	}
	var closer io.Closer
	if cfg.Federation, closer, err = federation(o, cfg.Logger); err != nil {
		return nil, err
	}
	c, err := client.New(cfg)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	return &device{c: c, fed: cfg.Federation, base: base, cancel: cancel}, nil
}

// policy reads OpenOptions.policy; the conditions a browser cannot
// report, and signed secure rounds it cannot join, are refused.
func policy(v js.Value) (client.Policy, error) {
	var p client.Policy
	if v.IsUndefined() || v.IsNull() {
		return p, nil
	}
	if v.Type() != js.TypeObject {
		return p, fmt.Errorf("%w: policy is not an object", client.ErrInvalidArgument)
	}
	keys := js.Global().Get("Object").Call("keys", v)
	for i := range keys.Length() {
		k := keys.Index(i).String()
		x := v.Get(k)
		// syscall/js panics on a value of another type, which would stop
		// the module: a setting of the wrong type is refused instead.
		want := ""
		num := func() float64 {
			if x.Type() != js.TypeNumber {
				want = "a number"
				return 0
			}
			return x.Float()
		}
		flag := func() bool {
			if x.Type() != js.TypeBoolean {
				want = "true or false"
				return false
			}
			return x.Bool()
		}
		switch k {
		case "minCohort":
			p.MinCohort = int(num())
		case "minNoiseMultiplier":
			p.MinNoiseMultiplier = num()
		case "maxClipNorm":
			p.MaxClipNorm = num()
		case "epsilon":
			p.Epsilon = num()
		case "delta":
			p.Delta = num()
		case "requireDistributedNoise":
			p.RequireDistributedNoise = flag()
		case "trustSamplingRate":
			p.TrustSamplingRate = flag()
		case "maxRoundBytes":
			p.MaxRoundBytes = int64(num())
		case "requireSignedSecAgg", "requireUnmetered", "requireCharging", "requireIdle":
			return p, fmt.Errorf("%w: policy.%s does not apply in a browser (no device certificate, no device conditions)", client.ErrInvalidArgument, k)
		default:
			return p, fmt.Errorf("%w: policy.%s is not a policy setting", client.ErrInvalidArgument, k)
		}
		if want != "" {
			return p, fmt.Errorf("%w: policy.%s: want %s", client.ErrInvalidArgument, k, want)
		}
	}
	return p, nil
}

// federation builds the network side from addrs, token, certHashes,
// items and clientID; nil without addrs.
func federation(o js.Value, log *slog.Logger) (client.Federation, io.Closer, error) {
	as := o.Get("addrs")
	if as.IsUndefined() || as.Length() == 0 {
		return nil, nil, nil
	}
	addrs := strs(as)
	tokenFn := o.Get("token")
	if tokenFn.Type() != js.TypeFunction {
		return nil, nil, fmt.Errorf("%w: token: want a function returning the device token", client.ErrInvalidArgument)
	}
	tokenOf := func(v js.Value, err error) ([]byte, error) {
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		b, err := client.ParseDeviceToken(v.String())
		if err != nil {
			// The page's backend gave something that is not a device token.
			return nil, fmt.Errorf("%w: token: %w", client.ErrInvalidArgument, err)
		}
		return b, nil
	}
	token := func(ctx context.Context) ([]byte, error) { return tokenOf(awaitValue(ctx, tokenFn.Invoke())) }
	id := str(o.Get("clientID"), "")
	var first js.Value // the token that names the device, on its way
	if id == "" {
		first = tokenFn.Invoke()
	}
	web := &client.WebOptions{Token: token}
	if hs := o.Get("certHashes"); !hs.IsUndefined() {
		for i, h := range strs(hs) {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != 32 {
				return nil, nil, fmt.Errorf("%w: certHashes[%d] is not a SHA-256 hash in hex", client.ErrInvalidArgument, i)
			}
			web.CertHashes = append(web.CertHashes, [32]byte(b))
		}
	}
	items, err := catalogue(o.Get("items"))
	if err != nil {
		return nil, nil, err
	}
	if len(items) == 0 {
		return nil, nil, fmt.Errorf("%w: items (the shop's catalogue, in the model's order) is required with addrs", client.ErrInvalidArgument)
	}
	if id == "" {
		// The node checks every request against the token's device.
		b, err := tokenOf(awaitValue(context.Background(), first))
		if err != nil {
			return nil, nil, err
		}
		claims, err := wire.ParseToken(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: token: %v", client.ErrInvalidArgument, err)
		}
		id = claims.Device
		// The first session, opened in the next moments to fetch the
		// model, uses this token rather than asking the shop for another.
		web.Token = firstThen(b, token)
	}
	d, err := client.NewDialerConfig(client.DialerConfig{Addrs: addrs, TLS: client.BrowserTLS(), Web: web, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	fed, err := client.NewNetwork(client.NetworkConfig{ClientID: id, Dialer: d, Items: items})
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return fed, d, nil
}

// catalogue reads the catalogue as fedrec.js passes it: one string to
// copy instead of a js.Value per item, {lines, n} (the IDs one a line) or
// JSON (when an ID holds a line break).
func catalogue(v js.Value) ([]string, error) {
	switch v.Type() {
	case js.TypeObject:
		items := strings.Split(str(v.Get("lines"), ""), "\n")
		if n := v.Get("n"); n.Type() != js.TypeNumber || n.Int() != len(items) {
			return nil, fmt.Errorf("%w: items: %d lines, want %v", client.ErrInvalidArgument, len(items), n)
		}
		return items, nil
	case js.TypeString:
		var items []string
		if err := json.Unmarshal([]byte(v.String()), &items); err != nil {
			return nil, fmt.Errorf("%w: items: want an array of item IDs: %v", client.ErrInvalidArgument, err)
		}
		return items, nil
	}
	return nil, nil
}

// firstThen returns a token source that returns tok at its first call if
// that comes within tokenReuse, and then calls next.
func firstThen(tok []byte, next func(context.Context) ([]byte, error)) func(context.Context) ([]byte, error) {
	var mu sync.Mutex
	deadline := time.Now().Add(tokenReuse)
	return func(ctx context.Context) ([]byte, error) {
		mu.Lock()
		t := tok
		tok = nil
		mu.Unlock()
		if t != nil && time.Now().Before(deadline) {
			return t, nil
		}
		return next(ctx)
	}
}

// tokenReuse bounds the age of the token open fetched for the device ID
// when the first session uses it: well within any token's lifetime.
const tokenReuse = 30 * time.Second

// methods are the device's methods for fedrec.js.
func (d *device) methods() map[string]any {
	var funcs []js.Func
	m := map[string]any{}
	method := func(name string, f func(args []js.Value) (any, error)) {
		fn := js.FuncOf(func(_ js.Value, args []js.Value) any { return promise(func() (any, error) { return f(args) }) })
		funcs = append(funcs, fn)
		m[name] = fn
	}
	method("record", d.record)
	method("recommend", d.recommend)
	method("sync", func([]js.Value) (any, error) {
		if _, err := d.c.Sync(d.base); err != nil {
			return nil, err
		}
		return map[string]any{"version": d.c.ModelVersion()}, nil
	})
	method("optIn", func([]js.Value) (any, error) { return nil, d.c.OptIn() })
	method("optOut", func([]js.Value) (any, error) { return nil, d.c.OptOut(d.base) })
	method("deleteMyData", func([]js.Value) (any, error) { return nil, d.c.DeleteMyData(d.base) })
	method("report", func([]js.Value) (any, error) {
		r, err := d.c.Report()
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		return js.Global().Get("JSON").Call("parse", string(b)), nil
	})
	method("participate", d.participate)
	method("storedBytes", func([]js.Value) (any, error) {
		n, err := d.c.StoredBytes()
		return float64(n), err
	})
	var once sync.Once
	method("close", func([]js.Value) (any, error) {
		var err error
		once.Do(func() {
			d.cancel()
			err = d.c.Close()
			if cl, ok := d.fed.(io.Closer); ok {
				err = errors.Join(err, cl.Close())
			}
			// fedrec.js calls none of them after close (its Device
			// rejects with "closed"); this call's promise is its own.
			for _, fn := range funcs {
				fn.Release()
			}
		})
		return nil, err
	})
	return m
}

// record(item, kind, timeMs?)
func (d *device) record(args []js.Value) (any, error) {
	if len(args) < 2 || args[0].Type() != js.TypeString || args[1].Type() != js.TypeString {
		return nil, fmt.Errorf("%w: record(item, kind, time?)", client.ErrInvalidArgument)
	}
	k, ok := kinds[args[1].String()]
	if !ok {
		return nil, fmt.Errorf("%w: record: kind %q, want view, click, cart or purchase", client.ErrInvalidArgument, args[1].String())
	}
	in := client.Interaction{Item: args[0].String(), Kind: k}
	if len(args) > 2 && args[2].Type() == js.TypeNumber {
		in.Time = time.UnixMilli(int64(args[2].Float()))
	}
	return nil, d.c.Record(d.base, in)
}

// recommend(n, exclude?)
func (d *device) recommend(args []js.Value) (any, error) {
	if len(args) < 1 || args[0].Type() != js.TypeNumber {
		return nil, fmt.Errorf("%w: recommend(n, {exclude})", client.ErrInvalidArgument)
	}
	var f client.Filter
	if len(args) > 1 && !args[1].IsUndefined() {
		f.Exclude = strs(args[1])
	}
	recs, err := d.c.Recommend(d.base, args[0].Int(), f)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(recs))
	for i, r := range recs {
		out[i] = map[string]any{"item": r.Item, "score": r.Score}
	}
	return out, nil
}

// participate(rounds, signal?) takes part in rounds until the device gave
// updates to rounds of them, the signal aborts, or an error no retry can
// fix (not opted in, budget spent, closed). No round open yet, a
// declined round, or a cluster out of reach is tried again later.
func (d *device) participate(args []js.Value) (any, error) {
	rounds := 1
	if len(args) > 0 && args[0].Type() == js.TypeNumber {
		rounds = args[0].Int()
	}
	ctx, cancel := context.WithCancelCause(d.base)
	defer cancel(nil)
	if len(args) > 1 && args[1].Type() == js.TypeObject {
		sig := args[1]
		if sig.Get("aborted").Truthy() {
			return nil, fmt.Errorf("participate: %w", errAborted)
		}
		abort := js.FuncOf(func(js.Value, []js.Value) any { cancel(errAborted); return nil })
		defer abort.Release()
		sig.Call("addEventListener", "abort", abort)
		defer sig.Call("removeEventListener", "abort", abort)
	}
	done, wait := 0, time.Second
	for done < rounds {
		_, err := d.c.Participate(ctx)
		if err == nil {
			done, wait = done+1, time.Second
			continue
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("participate: %w after %d rounds", context.Cause(ctx), done)
		}
		if !slices.Contains(retried, mobile.Code(err)) {
			return nil, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("participate: %w after %d rounds", context.Cause(ctx), done)
		}
		wait = min(2*wait, 30*time.Second)
	}
	return map[string]any{"rounds": done}, nil
}

// retried are the codes of failures that a later round may not have: no
// round open, a round declined for its terms, the cluster out of reach,
// a round cut short.
var retried = []string{mobile.CodeNoRound, mobile.CodeDeclined, mobile.CodeUnavailable, mobile.CodeTimeout, mobile.CodeInternal}

// errAborted is the cause of a participate stopped by its AbortSignal.
var errAborted = errors.New("aborted")

// promise runs f on its own goroutine (the JavaScript event loop must go
// on, to deliver what f waits for) and returns a Promise of its result.
// A failure rejects it with an Error whose code is the SDK's code of the
// error (mobile.Code), "aborted" for an AbortSignal.
func promise(f func() (any, error)) js.Value {
	var exec js.Func
	exec = js.FuncOf(func(_ js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer exec.Release()
			v, err := f()
			if err != nil {
				e := js.Global().Get("Error").New(err.Error())
				code := mobile.Code(err)
				if errors.Is(err, errAborted) {
					code = "aborted"
				}
				e.Set("code", code)
				reject.Invoke(e)
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(exec)
}

// awaitValue waits for a value that may be a Promise.
func awaitValue(ctx context.Context, v js.Value) (js.Value, error) {
	if v.Type() != js.TypeObject || v.Get("then").Type() != js.TypeFunction {
		return v, nil
	}
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var then, catch js.Func
	then = js.FuncOf(func(_ js.Value, a []js.Value) any {
		ch <- result{v: a[0]}
		then.Release()
		catch.Release()
		return nil
	})
	catch = js.FuncOf(func(_ js.Value, a []js.Value) any {
		ch <- result{err: errors.New(js.Global().Get("String").Invoke(a[0]).String())}
		then.Release()
		catch.Release()
		return nil
	})
	v.Call("then", then, catch)
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return js.Undefined(), ctx.Err()
	}
}

// str is v as a string, or def if it is undefined or null.
func str(v js.Value, def string) string {
	if v.IsUndefined() || v.IsNull() {
		return def
	}
	return v.String()
}

// strs is an array of strings.
func strs(v js.Value) []string {
	if v.IsUndefined() || v.IsNull() {
		return nil
	}
	out := make([]string, v.Length())
	for i := range out {
		out[i] = v.Index(i).String()
	}
	return out
}
