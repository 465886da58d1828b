package zone

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIncrementalUpdate is the cost of publishing one endpoint's
// change (its ready condition flips) against cluster size: headless
// Services of 100 endpoints, one slice each, a forward zone and both
// reverse zones. An op is one Apply and the rebuild that publishes it.
// Besides the wall time it reports the process's CPU time per op
// (cpu-µs/op, with the GC's share), which a busy machine disturbs less.
//
//	go test -run '^$' -bench IncrementalUpdate ./zone
func BenchmarkIncrementalUpdate(b *testing.B) {
	for _, endpoints := range []int{10_000, 100_000, 200_000} {
		b.Run(fmt.Sprintf("endpoints=%d", endpoints), func(b *testing.B) {
			const pods = 100
			svcs, sl := memoryFixture(endpoints/pods, pods)
			p := NewPublisher(testOptions(b), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			p.Replace(svcs, sl)
			p.Rebuild()
			b.ReportAllocs()
			i, cpu := 0, cpuTime()
			for b.Loop() {
				s := *sl[i%len(sl)]
				s.Endpoints = slices.Clone(s.Endpoints)
				e := &s.Endpoints[i%pods]
				e.Ready = !e.Ready
				sl[i%len(sl)] = &s
				p.Apply(SliceChange(OpUpsert, &s))
				if !p.Rebuild() {
					b.Fatal("no rebuild")
				}
				i += 7
			}
			b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
