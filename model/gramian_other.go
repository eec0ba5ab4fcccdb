//go:build !wasm

package model

// blockedGramian: see gramian.
const blockedGramian = false
