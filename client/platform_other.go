//go:build !(js && wasm)

package client

// browser reports a browser build (js/wasm), where Config.Dir names an
// IndexedDB database and Config.Key may be left to WebCrypto.
const browser = false
