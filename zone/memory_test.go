package zone

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/hdns-dev/hdns/policy"
)

// BenchmarkSnapshotMemory reports the live heap a Snapshot holds per
// endpoint (snapshot-B/endpoint) and what the shrunk objects it is built
// from hold (objects-B/endpoint), for Services of 20 Pods with one named
// port, in a forward zone and both reverse zones. The figures are heap in
// use after a full GC, not RSS: a process also carries the GC's headroom
// and the garbage of the previous snapshot.
//
//	go test -run '^$' -bench SnapshotMemory -benchtime 1x ./zone
func BenchmarkSnapshotMemory(b *testing.B) {
	for _, services := range []int{50, 500} {
		const pods = 20
		b.Run(fmt.Sprintf("endpoints=%d", services*pods), func(b *testing.B) {
			for b.Loop() {
				h0 := liveHeap()
				svcs, slices := memoryFixture(services, pods)
				h1 := liveHeap()
				c, err := policy.NewCompiler("ordered")
				if err != nil {
					b.Fatal(err)
				}
				opts := &Options{Zones: []string{"cluster.local."}, ReverseZones: []string{"in-addr.arpa.", "ip6.arpa."}, TTL: 5, Policies: c}
				snap := Build(opts, 1, svcs, slices)
				h2 := liveHeap()
				if snap.Stats.Endpoints != services*pods {
					b.Fatalf("snapshot holds %d endpoints, want %d", snap.Stats.Endpoints, services*pods)
				}
				n := float64(services * pods)
				b.ReportMetric(float64(h1-h0)/n, "objects-B/endpoint")
				b.ReportMetric(float64(h2-h1)/n, "snapshot-B/endpoint")
				runtime.KeepAlive(snap)
				runtime.KeepAlive(svcs)
				runtime.KeepAlive(slices)
			}
		})
	}
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// memoryFixture makes headless Services of pods ready Pods each, named and
// addressed like a Deployment's, one EndpointSlice per Service.
func memoryFixture(services, pods int) ([]*Service, []*EndpointSlice) {
	var svcs []*Service
	var slices []*EndpointSlice
	for s := range services {
		svc := &Service{Namespace: fmt.Sprintf("team-%d", s%50), Name: fmt.Sprintf("svc-%d", s), Kind: KindHeadless,
			Ports: []Port{{Name: "http", Protocol: "tcp", Port: 80}}}
		sl := &EndpointSlice{Namespace: svc.Namespace, Name: svc.Name + "-x7k2p", Service: svc.Name, AddressType: "IPv4", Ports: svc.Ports}
		for p := range pods {
			sl.Endpoints = append(sl.Endpoints, Endpoint{
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(s >> 8), byte(s), byte(p)})},
				PodName:   fmt.Sprintf("%s-7d9f8b6c5-%05d", svc.Name, p), NodeName: fmt.Sprintf("node-%d", p%8),
				Ready: true, Serving: true,
			})
		}
		svcs, slices = append(svcs, svc), append(slices, sl)
	}
	return svcs, slices
}
