package zone

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
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
// The service=1000 cases flip an endpoint of one Service of 1,000
// endpoints (ten slices of 100) among the others: what an update costs
// against the Service's size.
//
//	go test -run '^$' -bench IncrementalUpdate ./zone
func BenchmarkIncrementalUpdate(b *testing.B) {
	for _, endpoints := range []int{10_000, 100_000, 200_000} {
		b.Run(fmt.Sprintf("endpoints=%d", endpoints), func(b *testing.B) {
			const pods = 100
			svcs, sl := memoryFixture(endpoints/pods, pods)
			benchmarkFlips(b, svcs, sl, sl, pods)
		})
	}
	for _, endpoints := range []int{10_000, 200_000} {
		b.Run(fmt.Sprintf("endpoints=%d/service=1000", endpoints), func(b *testing.B) {
			const pods = 100
			svcs, sl := memoryFixture(endpoints/pods-10, pods)
			big, bigSlices := largeService(10, pods)
			benchmarkFlips(b, append(svcs, big), append(sl, bigSlices...), bigSlices, pods)
		})
	}
}

// benchmarkFlips publishes, per op, one endpoint's ready flip in one of
// flipped (slices of pods endpoints, among all).
func benchmarkFlips(b *testing.B, svcs []*Service, all, flipped []*EndpointSlice, pods int) {
	p := NewPublisher(testOptions(b), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	p.Replace(svcs, all)
	p.Rebuild()
	b.ReportAllocs()
	i, cpu := 0, cpuTime()
	for b.Loop() {
		s := *flipped[i%len(flipped)]
		s.Endpoints = slices.Clone(s.Endpoints)
		e := &s.Endpoints[i%pods]
		e.Ready = !e.Ready
		flipped[i%len(flipped)] = &s
		p.Apply(SliceChange(OpUpsert, &s))
		if !p.Rebuild() {
			b.Fatal("no rebuild")
		}
		i += 7
	}
	b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}

// largeService makes one headless Service of slices*pods ready Pods, in
// slices of pods endpoints, addressed in 11.0.0.0/16.
func largeService(slices, pods int) (*Service, []*EndpointSlice) {
	svc := &Service{Namespace: "team-big", Name: "big", Kind: KindHeadless, Ports: []Port{{Name: "http", Protocol: "tcp", Port: 80}}}
	var out []*EndpointSlice
	for s := range slices {
		sl := &EndpointSlice{Namespace: svc.Namespace, Name: fmt.Sprintf("big-%02d", s), Service: svc.Name, AddressType: "IPv4",
			Ports: svc.Ports}
		for p := range pods {
			n := s*pods + p
			e := NewEndpoint(netip.AddrFrom4([4]byte{11, 0, byte(n >> 8), byte(n)}), fmt.Sprintf("%s/big-7d9f8b6c5-%05d", svc.Namespace, n), "")
			e.Ready, e.Serving = true, true
			e.Topology = &Topology{NodeName: fmt.Sprintf("node-%d", n%8), Zone: fmt.Sprintf("zone-%d", n%3)}
			sl.Endpoints = append(sl.Endpoints, e)
		}
		out = append(out, sl)
	}
	return svc, out
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
