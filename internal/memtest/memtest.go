// Package memtest measures the Go heap for benchmarks that report bytes
// per object (zone's snapshot, policy's client holds). It owns one
// definition of "live heap", which those test files share. It is
// test-only: no production package may import it. It imports only the
// standard library.
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
