// Package memtest measures the Go heap for benchmarks that report bytes
// per object (zone's snapshot, policy's client holds). It is its own
// package so that those test files share one definition of "live heap".
package memtest

import "runtime"

// LiveHeap returns the bytes of heap objects still reachable after a full
// collection. Take it before and after building what is measured, and keep
// that alive (runtime.KeepAlive) until the second reading.
func LiveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
