//go:build linux

package secagg

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPU returns the CPU time used so far by the calling OS thread
// (clock_gettime(CLOCK_THREAD_CPUTIME_ID), which is exact to the
// nanosecond, unlike getrusage). Benchmarks lock their goroutine to a
// thread and time single-threaded work with it, so that other processes
// on a shared machine do not inflate the figures; only their effect on the
// caches remains. A call costs well under a microsecond.
func threadCPU() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		panic(e)
	}
	return time.Duration(ts.Nano())
}

const haveThreadCPU = true
