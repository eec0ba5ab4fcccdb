//go:build !linux

package secagg

import "time"

// threadCPU is only available on Linux; elsewhere the benchmarks use the
// wall clock.
func threadCPU() time.Duration { panic("secagg: no thread CPU clock") }

const haveThreadCPU = false
