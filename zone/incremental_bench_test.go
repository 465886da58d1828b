package zone

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
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
			big, bigSlices := largeService(0, 10, pods)
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

// largeService makes headless Service big-<i> of slices*pods ready Pods,
// in slices of pods endpoints, addressed in 11.<i>.0.0/16.
func largeService(i uint8, slices, pods int) (*Service, []*EndpointSlice) {
	svc := &Service{Namespace: "team-big", Name: fmt.Sprintf("big-%d", i), Kind: KindHeadless, Ports: []Port{{Name: "http", Protocol: "tcp", Port: 80}}}
	var out []*EndpointSlice
	for s := range slices {
		sl := &EndpointSlice{Namespace: svc.Namespace, Name: fmt.Sprintf("%s-%02d", svc.Name, s), Service: svc.Name, AddressType: "IPv4",
			Ports: svc.Ports}
		for p := range pods {
			n := s*pods + p
			e := NewEndpoint(netip.AddrFrom4([4]byte{11, i, byte(n >> 8), byte(n)}), fmt.Sprintf("%s/%s-7d9f8b6c5-%05d", svc.Namespace, svc.Name, n), "")
			e.Ready, e.Serving = true, true
			e.Topology = &Topology{NodeName: fmt.Sprintf("node-%d", n%8), Zone: fmt.Sprintf("zone-%d", n%3)}
			sl.Endpoints = append(sl.Endpoints, e)
		}
		out = append(out, sl)
	}
	return svc, out
}

// TestPublishLatencyUnderChurn times, at 200,000 endpoints (Services of
// 100, and 75 of 1,000 as test/bench's churn fixture has), each change
// from Apply to the published snapshot that holds it, one endpoint's
// ready flip in a random slice every 10 ms for HDNS_ZONE_CHURN seconds:
// the zone's own share of propagation, without the API server and the
// watch. It runs only when that variable is set.
//
//	HDNS_ZONE_CHURN=20 go test -run PublishLatencyUnderChurn -v ./zone
func TestPublishLatencyUnderChurn(t *testing.T) {
	seconds, _ := strconv.Atoi(os.Getenv("HDNS_ZONE_CHURN"))
	if seconds <= 0 {
		t.Skip("HDNS_ZONE_CHURN is not set")
	}
	const pods = 100
	svcs, sl := memoryFixture(200_000/pods-750, pods)
	for i := range uint8(75) {
		big, bigSlices := largeService(i, 10, pods)
		svcs, sl = append(svcs, big), append(sl, bigSlices...)
	}
	p := NewPublisher(testOptions(t), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	p.Replace(svcs, sl)
	p.Rebuild()
	go p.Run(t.Context())
	var took []time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(time.Duration(seconds) * time.Second); time.Now().Before(end); {
		<-tick.C
		k := r.IntN(len(sl))
		s := *sl[k]
		s.Endpoints = slices.Clone(s.Endpoints)
		e := &s.Endpoints[r.IntN(len(s.Endpoints))]
		e.Ready = !e.Ready
		sl[k] = &s
		before, start := p.Snapshot(), time.Now()
		p.Apply(SliceChange(OpUpsert, &s))
		for p.Snapshot() == before {
			time.Sleep(50 * time.Microsecond)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	q := func(f float64) time.Duration { return took[int(f*float64(len(took)-1))] }
	t.Logf("%d changes: p50 %v, p90 %v, p99 %v, max %v", len(took), q(0.5), q(0.9), q(0.99), q(1))
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
