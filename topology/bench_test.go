package topology

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"github.com/hdns-dev/hdns/internal/memtest"
	"github.com/hdns-dev/hdns/zone"
)

// Cluster shape of the benchmarks: 1,000 nodes in 3 zones, each with a
// /24 podCIDR, and 100,000 endpoints in slices of 100.
const (
	benchNodes     = 1000
	benchEndpoints = 100_000
	benchPerSlice  = 100
)

func benchNode(i int) *zone.ClusterNode {
	return &zone.ClusterNode{
		Name: fmt.Sprintf("node-%d", i), Zone: fmt.Sprintf("zone-%d", i%3), Region: "region",
		Addresses: []netip.Addr{netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)})},
		PodCIDRs:  []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)},
	}
}

// benchSlice is slice s of the endpoints at a version of a rollout: each
// version gives every endpoint a new address, outside the podCIDRs, on
// the same node.
func benchSlice(s, version int) *zone.EndpointSlice {
	out := &zone.EndpointSlice{Namespace: "ns", Name: fmt.Sprintf("s-%d", s), Service: "svc"}
	for j := range benchPerSlice {
		i := s*benchPerSlice + j
		n := i % benchNodes
		e := zone.NewEndpoint(netip.AddrFrom4([4]byte{10, byte(128 + version%4*2 + i>>16), byte(i >> 8), byte(i)}), "", "")
		e.Topology = &zone.Topology{NodeName: fmt.Sprintf("node-%d", n), Zone: fmt.Sprintf("zone-%d", n%3)}
		out.Endpoints = append(out.Endpoints, e)
	}
	return out
}

func benchLocator(tb testing.TB) *Locator {
	l := New(discard{})
	var changes []zone.Change
	for i := range benchNodes {
		changes = append(changes, zone.NodeChange(zone.OpUpsert, benchNode(i)))
	}
	for s := range benchEndpoints / benchPerSlice {
		changes = append(changes, zone.SliceChange(zone.OpUpsert, benchSlice(s, 0)))
	}
	l.Apply(changes...)
	return l
}

type discard struct{}

func (discard) Apply(...zone.Change)                           {}
func (discard) Replace([]*zone.Service, []*zone.EndpointSlice) {}

func BenchmarkLocate(b *testing.B) {
	l := benchLocator(b)
	for _, bc := range []struct {
		name   string
		client netip.Addr
		by     Method
	}{
		{name: "node-address", client: netip.MustParseAddr("192.168.1.17"), by: ByNodeAddress},
		{name: "endpoint", client: benchSlice(7, 0).Endpoints[3].Address(), by: ByEndpoint},
		{name: "pod-cidr", client: netip.MustParseAddr("10.2.3.251"), by: ByPodCIDR},
		{name: "unknown", client: netip.MustParseAddr("172.16.0.1"), by: Unknown},
		{name: "mapped", client: netip.MustParseAddr("::ffff:10.2.3.251"), by: ByPodCIDR},
	} {
		if got := l.Locate(bc.client); got.By != bc.by {
			b.Fatalf("%s: Locate(%s) = %+v", bc.name, bc.client, got)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l.Locate(bc.client)
			}
		})
	}
}

// BenchmarkApplySlice is the cost of one slice of 100 endpoints all
// changing address (a rollout) in an index of 100,000 endpoints.
func BenchmarkApplySlice(b *testing.B) {
	l := benchLocator(b)
	versions := [2][]*zone.EndpointSlice{}
	for v := range versions {
		for s := range 64 {
			versions[v] = append(versions[v], benchSlice(s, v+1))
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := versions[i/64%2][i%64]
		l.Apply(zone.SliceChange(zone.OpUpsert, s))
		i++
	}
}

// TestLocatorMemory reports the heap the index takes per endpoint and
// per node, beyond the objects the source holds anyway.
func TestLocatorMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a 100,000-endpoint index")
	}
	var nodes []*zone.ClusterNode
	for i := range benchNodes {
		nodes = append(nodes, benchNode(i))
	}
	var slices []*zone.EndpointSlice
	for s := range benchEndpoints / benchPerSlice {
		slices = append(slices, benchSlice(s, 0))
	}
	base := memtest.LiveHeap()
	l := New(discard{})
	for _, n := range nodes {
		l.Apply(zone.NodeChange(zone.OpUpsert, n))
	}
	withNodes := memtest.LiveHeap()
	l.Replace(nil, slices)
	all := memtest.LiveHeap()
	runtime.KeepAlive(l)
	perNode := float64(withNodes-base) / benchNodes
	perEndpoint := float64(all-withNodes) / benchEndpoints
	t.Logf("index: %.0f B per node, %.0f B per endpoint (%d nodes, %d endpoints)", perNode, perEndpoint, benchNodes, benchEndpoints)
	if perEndpoint > 400 {
		t.Errorf("%.0f B per endpoint", perEndpoint)
	}
}
