//go:build !(js && wasm)

package main

import (
	"fmt"
	"os"
)

// main explains that this command is for browsers only.
func main() {
	fmt.Fprintln(os.Stderr, "client/web is the SDK for browsers: build it with GOOS=js GOARCH=wasm")
	os.Exit(2)
}
