//go:build race

package wire

// raceEnabled: the race detector slows allocation measurements tenfold.
const raceEnabled = true
