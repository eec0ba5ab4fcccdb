//go:build js && wasm

package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"syscall/js"
)

// idbStorage is the store's files in an IndexedDB database named by
// Config.Dir, in two object stores:
//
//	files  the files' bytes, in chunks keyed [name, offset]: a whole-file
//	       write is one chunk at offset 0, each append to the log one more
//	keys   "kek": the non-extractable WebCrypto key that seals the data
//	       key when the page passes no Config.Key (webCryptoKey)
//
// Every change is one readwrite transaction of "strict" durability, which
// stands for the directory backend's fsync and rename: a write replaces
// all of a file's chunks at once, an append adds its chunk whole or not
// at all. Removing the key file removes the WebCrypto key in the same
// transaction. Errors name IndexedDB; those of write and list start with
// "client: store", as the directory backend's do.
type idbStorage struct{ db js.Value }

const (
	idbVersion = 1
	idbFiles   = "files"
	idbKeys    = "keys"
	idbKEK     = "kek"
)

// openStorage opens (creating if needed) the IndexedDB database name.
func openStorage(name string, _ bool) (storage, error) {
	idb := js.Global().Get("indexedDB")
	if idb.IsUndefined() || idb.IsNull() {
		return nil, errors.New("client: store: this browser has no IndexedDB")
	}
	var req js.Value
	if err := catchJS(func() { req = idb.Call("open", name, idbVersion) }); err != nil {
		return nil, fmt.Errorf("client: store: open IndexedDB %s: %w", name, err)
	}
	// The database is new (or older): create its stores, synchronously
	// inside the upgrade transaction.
	upgrade := js.FuncOf(func(js.Value, []js.Value) any {
		db := req.Get("result")
		names := db.Get("objectStoreNames")
		for _, s := range []string{idbFiles, idbKeys} {
			if !names.Call("contains", s).Bool() {
				db.Call("createObjectStore", s)
			}
		}
		return nil
	})
	defer upgrade.Release()
	req.Set("onupgradeneeded", upgrade)
	db, err := awaitRequest(req)
	if err != nil {
		return nil, fmt.Errorf("client: store: open IndexedDB %s: %w", name, err)
	}
	return &idbStorage{db: db}, nil
}

// awaitRequest waits for an IDBRequest to succeed or fail.
func awaitRequest(req js.Value) (js.Value, error) {
	ch := make(chan error, 1)
	ok := js.FuncOf(func(js.Value, []js.Value) any { ch <- nil; return nil })
	fail := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- jsError(req.Get("error"))
		return nil
	})
	defer ok.Release()
	defer fail.Release()
	req.Set("onsuccess", ok)
	req.Set("onerror", fail)
	if err := <-ch; err != nil {
		return js.Undefined(), err
	}
	return req.Get("result"), nil
}

// tx runs f in a transaction on the given stores and waits for it to
// commit (durably, for readwrite) or abort. f issues the requests; their
// results are read after tx returns.
func (d *idbStorage) tx(mode string, stores []any, f func(tx js.Value)) error {
	ch := make(chan error, 1)
	var t js.Value
	done := js.FuncOf(func(js.Value, []js.Value) any { ch <- nil; return nil })
	abort := js.FuncOf(func(js.Value, []js.Value) any {
		err := t.Get("error")
		if err.IsNull() || err.IsUndefined() {
			ch <- errors.New("transaction aborted")
		} else {
			ch <- jsError(err)
		}
		return nil
	})
	defer done.Release()
	defer abort.Release()
	err := catchJS(func() {
		t = d.db.Call("transaction", stores, mode, map[string]any{"durability": "strict"})
		t.Set("oncomplete", done)
		t.Set("onabort", abort)
		f(t)
	})
	if err != nil {
		if !t.IsUndefined() && catchJS(func() { t.Call("abort") }) == nil {
			<-ch // the callbacks stay until the abort is delivered
		}
		return err
	}
	return <-ch
}

// chunks is the key range of name's chunks.
func chunks(name string) js.Value {
	return js.Global().Get("IDBKeyRange").Call("bound", []any{name, 0}, []any{name, math.Inf(1)})
}

func (d *idbStorage) read(name string) ([]byte, error) {
	var req js.Value
	err := d.tx("readonly", []any{idbFiles}, func(tx js.Value) {
		req = tx.Call("objectStore", idbFiles).Call("getAll", chunks(name))
	})
	if err != nil {
		return nil, fmt.Errorf("indexeddb: read %s: %w", name, err)
	}
	cs := req.Get("result")
	if cs.Length() == 0 {
		return nil, fmt.Errorf("indexeddb: %s: %w", name, fs.ErrNotExist)
	}
	var b []byte
	for i := range cs.Length() {
		b = append(b, goBytes(cs.Index(i))...)
	}
	return b, nil
}

func (d *idbStorage) write(name string, b []byte) error {
	err := d.tx("readwrite", []any{idbFiles}, func(tx js.Value) {
		s := tx.Call("objectStore", idbFiles)
		s.Call("delete", chunks(name))
		s.Call("put", jsBytes(b), []any{name, 0})
	})
	if err != nil {
		return fmt.Errorf("client: store: write %s: indexeddb: %w", name, err)
	}
	return nil
}

func (d *idbStorage) remove(name string) error {
	stores := []any{idbFiles}
	if name == keyFile {
		stores = append(stores, idbKeys)
	}
	err := d.tx("readwrite", stores, func(tx js.Value) {
		tx.Call("objectStore", idbFiles).Call("delete", chunks(name))
		if name == keyFile {
			// What the key file sealed goes with it.
			tx.Call("objectStore", idbKeys).Call("delete", idbKEK)
		}
	})
	if err != nil {
		return fmt.Errorf("indexeddb: remove %s: %w", name, err)
	}
	return nil
}

// sync: every transaction was durable when it completed.
func (d *idbStorage) sync() error { return nil }

func (d *idbStorage) list() ([]string, error) {
	var req js.Value
	err := d.tx("readonly", []any{idbFiles}, func(tx js.Value) {
		req = tx.Call("objectStore", idbFiles).Call("getAllKeys")
	})
	if err != nil {
		return nil, fmt.Errorf("client: store: list: indexeddb: %w", err)
	}
	keys := req.Get("result")
	var names []string
	for i := range keys.Length() {
		n := keys.Index(i).Index(0).String()
		if len(names) == 0 || names[len(names)-1] != n { // keys come sorted
			names = append(names, n)
		}
	}
	return names, nil
}

func (d *idbStorage) close() error {
	catchJS(func() { d.db.Call("close") })
	return nil
}

func (d *idbStorage) openAppend(name string) (appendFile, error) {
	b, err := d.read(name)
	if err != nil {
		return nil, err
	}
	return &idbLog{d: d, name: name, size: int64(len(b))}, nil
}

// idbLog is the log: each append a chunk at the offset it starts at.
type idbLog struct {
	d    *idbStorage
	name string
	size int64
}

func (l *idbLog) append(b []byte) error {
	err := l.d.tx("readwrite", []any{idbFiles}, func(tx js.Value) {
		tx.Call("objectStore", idbFiles).Call("put", jsBytes(b), []any{l.name, l.size})
	})
	if err != nil {
		return fmt.Errorf("indexeddb: append to %s: %w", l.name, err)
	}
	l.size += int64(len(b))
	return nil
}

// truncate rewrites the file as one chunk: it is rare (a torn tail found
// at open, a failed append).
func (l *idbLog) truncate(size int64) error {
	b, err := l.d.read(l.name)
	if err != nil {
		return err
	}
	if size > int64(len(b)) {
		return fmt.Errorf("indexeddb: truncate %s to %d bytes: it has %d", l.name, size, len(b))
	}
	if err := l.d.write(l.name, b[:size]); err != nil {
		return err
	}
	l.size = size
	return nil
}

func (l *idbLog) close() error { return nil }

// platformKey is the browser's key when the page passes no Config.Key.
func platformKey(files storage) keySealer {
	if d, ok := files.(*idbStorage); ok {
		return webCryptoKey{d}
	}
	return nil
}

// webCryptoKey seals the data key with a non-extractable AES-GCM
// CryptoKey, created with the store and kept in the database's "keys"
// store: IndexedDB keeps the key object (structured clone) without its
// bytes ever reaching the page, and WebCrypto encrypts with it as
// crypto/cipher's GCM does (the tag after the ciphertext).
type webCryptoKey struct{ d *idbStorage }

// key returns the CryptoKey, creating it if create and there is none;
// js.Null() if there is none.
func (k webCryptoKey) key(create bool) (js.Value, error) {
	var req js.Value
	err := k.d.tx("readonly", []any{idbKeys}, func(tx js.Value) {
		req = tx.Call("objectStore", idbKeys).Call("get", idbKEK)
	})
	if err != nil {
		return js.Null(), err
	}
	if key := req.Get("result"); !key.IsUndefined() || !create {
		if key.IsUndefined() {
			return js.Null(), nil
		}
		return key, nil
	}
	subtle := js.Global().Get("crypto").Get("subtle")
	if subtle.IsUndefined() {
		return js.Null(), errors.New("no WebCrypto (crypto.subtle needs a secure context: https or localhost)")
	}
	var p js.Value
	err = catchJS(func() {
		p = subtle.Call("generateKey", map[string]any{"name": "AES-GCM", "length": 256}, false, []any{"encrypt", "decrypt"})
	})
	if err != nil {
		return js.Null(), err
	}
	key, err := await(context.Background(), p)
	if err != nil {
		return js.Null(), err
	}
	err = k.d.tx("readwrite", []any{idbKeys}, func(tx js.Value) {
		tx.Call("objectStore", idbKeys).Call("put", key, idbKEK)
	})
	return key, err
}

// gcm runs subtle.encrypt or subtle.decrypt.
func (k webCryptoKey) gcm(op string, key js.Value, nonce, data, aad []byte) ([]byte, error) {
	var p js.Value
	err := catchJS(func() {
		alg := map[string]any{"name": "AES-GCM", "iv": jsBytes(nonce), "additionalData": jsBytes(aad), "tagLength": 8 * tagLen}
		p = js.Global().Get("crypto").Get("subtle").Call(op, alg, key, jsBytes(data))
	})
	if err != nil {
		return nil, err
	}
	v, err := await(context.Background(), p)
	if err != nil {
		return nil, err
	}
	return goBytes(v), nil
}

func (k webCryptoKey) sealKey(nonce, dek, aad []byte) ([]byte, error) {
	key, err := k.key(true)
	if err != nil {
		return nil, fmt.Errorf("webcrypto key: %w", err)
	}
	return k.gcm("encrypt", key, nonce, dek, aad)
}

func (k webCryptoKey) openKey(nonce, sealed, aad []byte) ([]byte, error) {
	key, err := k.key(false)
	if err != nil {
		return nil, fmt.Errorf("client: store: webcrypto key: %w", err)
	}
	if key.IsNull() {
		// The key file outlived the key that sealed it.
		return nil, ErrWrongKey
	}
	dek, err := k.gcm("decrypt", key, nonce, sealed, aad)
	var de *domError
	if errors.As(err, &de) && de.name == "OperationError" {
		return nil, ErrWrongKey
	}
	if err != nil {
		return nil, fmt.Errorf("client: store: webcrypto: %w", err)
	}
	return dek, nil
}
