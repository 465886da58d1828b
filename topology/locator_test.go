package topology

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/zone"
)

func zoneLabels(zoneName, region string) map[string]string {
	l := map[string]string{}
	if zoneName != "" {
		l[corev1.LabelTopologyZone] = zoneName
	}
	if region != "" {
		l[corev1.LabelTopologyRegion] = region
	}
	return l
}

func node(n fixture.Node) zone.Change {
	return zone.NodeChange(zone.OpUpsert, zone.ClusterNodeFromAPI(n.API()))
}

func slice(s fixture.EndpointSlice) zone.Change {
	if s.Namespace == "" {
		s.Namespace = "ns"
	}
	if s.Service == "" {
		s.Service = "svc"
	}
	return zone.SliceChange(zone.OpUpsert, zone.EndpointSliceFromAPI(s.API()))
}

// cluster is three zones of one region, a node each, dual-stack, with
// pods of a Service on them.
func cluster() []zone.Change {
	return []zone.Change{
		node(fixture.Node{Name: "node-a", Labels: zoneLabels("zone-a", "region-1"), InternalIP: "192.168.0.1",
			Addresses: []string{"fd00::1"}, PodCIDRs: []string{"10.0.1.0/24", "fd10:0:0:1::/64"}}),
		node(fixture.Node{Name: "node-b", Labels: zoneLabels("zone-b", "region-1"), InternalIP: "192.168.0.2",
			PodCIDRs: []string{"10.0.2.0/24"}}),
		node(fixture.Node{Name: "node-c", Labels: zoneLabels("zone-c", "region-1"), InternalIP: "192.168.0.3",
			PodCIDRs: []string{"10.0.3.0/24"}}),
		slice(fixture.EndpointSlice{Name: "svc-1", Endpoints: []fixture.Endpoint{
			{Address: "10.0.1.5", Pod: "p1", NodeName: "node-a", Zone: "zone-a"},
			{Address: "10.0.2.5", Pod: "p2", NodeName: "node-b", Zone: "zone-b"},
			// A pod whose address the CNI took outside its node's range.
			{Address: "10.200.0.9", Pod: "p3", NodeName: "node-c", Zone: "zone-c"},
		}}),
	}
}

func TestLocate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		changes []zone.Change // after cluster()
		client  string
		want    Location
	}{
		{name: "node address", client: "192.168.0.2",
			want: Location{Node: "node-b", Zone: "zone-b", Region: "region-1", By: ByNodeAddress, Bits: 32}},
		{name: "node address IPv6", client: "fd00::1",
			want: Location{Node: "node-a", Zone: "zone-a", Region: "region-1", By: ByNodeAddress, Bits: 128}},
		{name: "IPv4-mapped IPv6 client", client: "::ffff:192.168.0.3",
			want: Location{Node: "node-c", Zone: "zone-c", Region: "region-1", By: ByNodeAddress, Bits: 32}},
		{name: "pod CIDR", client: "10.0.3.77",
			want: Location{Node: "node-c", Zone: "zone-c", Region: "region-1", By: ByPodCIDR, Bits: 24}},
		{name: "pod CIDR IPv6", client: "fd10::1:0:0:0:42",
			want: Location{Node: "node-a", Zone: "zone-a", Region: "region-1", By: ByPodCIDR, Bits: 64}},
		{name: "endpoint inside its node's range: the range's prefix", client: "10.0.1.5",
			want: Location{Node: "node-a", Zone: "zone-a", Region: "region-1", By: ByEndpoint, Bits: 24}},
		{name: "endpoint outside any range", client: "10.200.0.9",
			want: Location{Node: "node-c", Zone: "zone-c", Region: "region-1", By: ByEndpoint, Bits: 32}},
		{name: "unknown", client: "172.16.0.1", want: Location{}},
		{name: "unknown IPv6", client: "2001:db8::1", want: Location{}},
		{name: "invalid address", client: "", want: Location{}},
		{name: "node without zone labels: node known, zone unknown",
			changes: []zone.Change{node(fixture.Node{Name: "node-d", InternalIP: "192.168.0.4", PodCIDRs: []string{"10.0.4.0/24"}})},
			client:  "10.0.4.1", want: Location{Node: "node-d", By: ByPodCIDR, Bits: 24}},
		{name: "overlapping pod CIDRs: the longest prefix wins",
			changes: []zone.Change{node(fixture.Node{Name: "node-wide", Labels: zoneLabels("zone-w", ""), PodCIDRs: []string{"10.0.0.0/16"}})},
			client:  "10.0.2.9", want: Location{Node: "node-b", Zone: "zone-b", Region: "region-1", By: ByPodCIDR, Bits: 24}},
		{name: "overlapping pod CIDRs: the shorter where the longer does not hold it",
			changes: []zone.Change{node(fixture.Node{Name: "node-wide", Labels: zoneLabels("zone-w", ""), PodCIDRs: []string{"10.0.0.0/16"}})},
			client:  "10.0.9.9", want: Location{Node: "node-wide", Zone: "zone-w", By: ByPodCIDR, Bits: 32}},
		{name: "equal pod CIDRs: the node whose name sorts first",
			changes: []zone.Change{node(fixture.Node{Name: "node-0", Labels: zoneLabels("zone-0", ""), PodCIDRs: []string{"10.0.2.0/24"}})},
			client:  "10.0.2.9", want: Location{Node: "node-0", Zone: "zone-0", By: ByPodCIDR, Bits: 32}},
		{name: "an address two nodes list: the node whose name sorts first",
			changes: []zone.Change{node(fixture.Node{Name: "node-0", Labels: zoneLabels("zone-0", ""), InternalIP: "192.168.0.3"})},
			client:  "192.168.0.3", want: Location{Node: "node-0", Zone: "zone-0", By: ByNodeAddress, Bits: 32}},
		{name: "a node address inside another node's pod CIDR: the node address",
			changes: []zone.Change{node(fixture.Node{Name: "node-x", Labels: zoneLabels("zone-x", ""), InternalIP: "10.0.1.200"})},
			client:  "10.0.1.200", want: Location{Node: "node-x", Zone: "zone-x", By: ByNodeAddress, Bits: 32}},
		{name: "a node address that is also an endpoint of another node: the node address",
			changes: []zone.Change{slice(fixture.EndpointSlice{Name: "host", Endpoints: []fixture.Endpoint{
				{Address: "192.168.0.1", Pod: "h", NodeName: "node-b", Zone: "zone-b"}}})},
			client: "192.168.0.1", want: Location{Node: "node-a", Zone: "zone-a", Region: "region-1", By: ByNodeAddress, Bits: 32}},
		{name: "an address two slices place on two nodes: the node whose name sorts first",
			changes: []zone.Change{slice(fixture.EndpointSlice{Name: "stale", Endpoints: []fixture.Endpoint{
				{Address: "10.0.2.5", Pod: "old", NodeName: "node-0"}}})},
			client: "10.0.2.5", want: Location{Node: "node-0", By: ByEndpoint, Bits: 32}},
		{name: "node deleted while its pods serve: the endpoint's node and zone",
			changes: []zone.Change{zone.NodeChange(zone.OpDelete, &zone.ClusterNode{Name: "node-c"})},
			client:  "10.200.0.9", want: Location{Node: "node-c", Zone: "zone-c", By: ByEndpoint, Bits: 32}},
		{name: "node deleted: its address and range are unknown",
			changes: []zone.Change{zone.NodeChange(zone.OpDelete, &zone.ClusterNode{Name: "node-c"})},
			client:  "10.0.3.77", want: Location{}},
		{name: "endpoint of an unknown node without a zone field",
			changes: []zone.Change{slice(fixture.EndpointSlice{Name: "ghost", Endpoints: []fixture.Endpoint{
				{Address: "10.99.0.1", Pod: "g", NodeName: "node-gone"}}})},
			client: "10.99.0.1", want: Location{Node: "node-gone", By: ByEndpoint, Bits: 32}},
		{name: "endpoint without a node name is no claim",
			changes: []zone.Change{slice(fixture.EndpointSlice{Name: "nameless", Endpoints: []fixture.Endpoint{
				{Address: "10.99.0.2", Pod: "n", Zone: "zone-a"}}})},
			client: "10.99.0.2", want: Location{}},
		{name: "node zone label wins over the endpoint's zone field",
			changes: []zone.Change{slice(fixture.EndpointSlice{Name: "mislabelled", Endpoints: []fixture.Endpoint{
				{Address: "10.99.0.3", Pod: "m", NodeName: "node-a", Zone: "zone-q"}}})},
			client: "10.99.0.3", want: Location{Node: "node-a", Zone: "zone-a", Region: "region-1", By: ByEndpoint, Bits: 32}},
		{name: "IPv4-mapped pod CIDR locates IPv4 clients",
			changes: []zone.Change{node(fixture.Node{Name: "node-m", Labels: zoneLabels("zone-m", ""), PodCIDRs: []string{"::ffff:10.50.0.0/112"}})},
			client:  "10.50.3.3", want: Location{Node: "node-m", Zone: "zone-m", By: ByPodCIDR, Bits: 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(new(sourcetest.Sink))
			l.Apply(cluster()...)
			l.Apply(tc.changes...)
			var client netip.Addr
			if tc.client != "" {
				client = netip.MustParseAddr(tc.client)
			}
			if got := l.Locate(client); got != tc.want {
				t.Errorf("Locate(%s) = %+v, want %+v", tc.client, got, tc.want)
			}
		})
	}
}

// TestLocateOrderFree checks that the answer does not depend on the order
// the claims came in: each tie of the table above, the other way round.
func TestLocateOrderFree(t *testing.T) {
	changes := []zone.Change{
		node(fixture.Node{Name: "node-z", InternalIP: "192.168.1.1", PodCIDRs: []string{"10.1.0.0/24"}}),
		node(fixture.Node{Name: "node-a", InternalIP: "192.168.1.1", PodCIDRs: []string{"10.1.0.0/24"}}),
		slice(fixture.EndpointSlice{Name: "s1", Endpoints: []fixture.Endpoint{{Address: "10.9.0.1", NodeName: "node-z"}}}),
		slice(fixture.EndpointSlice{Name: "s2", Endpoints: []fixture.Endpoint{{Address: "10.9.0.1", NodeName: "node-a"}}}),
	}
	for _, order := range [][]int{{0, 1, 2, 3}, {1, 0, 3, 2}} {
		l := New(new(sourcetest.Sink))
		for _, i := range order {
			l.Apply(changes[i])
		}
		for _, client := range []string{"192.168.1.1", "10.1.0.7", "10.9.0.1"} {
			if got := l.Locate(netip.MustParseAddr(client)); got.Node != "node-a" {
				t.Errorf("order %v: Locate(%s) = %+v, want node-a", order, client, got)
			}
		}
	}
}

func TestLocatorChanges(t *testing.T) {
	next := new(sourcetest.Sink)
	l := New(next)
	l.Apply(cluster()...)
	at := func(client string) Location { return l.Locate(netip.MustParseAddr(client)) }
	before := l.current.Load()

	// A pod moves: its slice's new version claims the address for
	// another node, and the version published before is untouched.
	l.Apply(slice(fixture.EndpointSlice{Name: "svc-1", Endpoints: []fixture.Endpoint{
		{Address: "10.0.1.5", Pod: "p1", NodeName: "node-b", Zone: "zone-b"}}}))
	if got := at("10.0.1.5"); got.Node != "node-b" || got.By != ByEndpoint {
		t.Errorf("moved endpoint at %+v", got)
	}
	if got := at("10.200.0.9"); got != (Location{}) {
		t.Errorf("endpoint gone from its slice still located at %+v", got)
	}
	if h, ok := get(before.exact, &addrKey{10: 0xff, 11: 0xff, 12: 10, 13: 200, 14: 0, 15: 9}, before.seed); !ok || h.node != "node-c" {
		t.Errorf("the published version changed: %+v %v", h, ok)
	}

	// A relabelled node moves its clients to the new zone.
	l.Apply(node(fixture.Node{Name: "node-b", Labels: zoneLabels("zone-q", "region-2"), InternalIP: "192.168.0.2", PodCIDRs: []string{"10.0.2.0/24"}}))
	if got := at("10.0.2.1"); got.Zone != "zone-q" || got.Region != "region-2" {
		t.Errorf("relabelled node's pod at %+v", got)
	}

	// A relist that no longer holds the slice forgets its endpoints, and
	// keeps the Nodes, which Replace does not carry.
	l.Replace(nil, nil)
	if got := at("10.0.1.5"); got.By != ByPodCIDR || got.Node != "node-a" {
		t.Errorf("after a relist without the slice: %+v", got)
	}
	if s := l.Stats(); s.Nodes != 3 || s.Slices != 0 || s.Addresses != 4 {
		t.Errorf("stats %+v, want 3 nodes, 0 slices, 4 node addresses", s)
	}
	if _, _, synced := next.List(); !synced {
		t.Error("Replace did not reach the next sink")
	}

	// Deleting what was claimed leaves nothing behind.
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		l.Apply(zone.NodeChange(zone.OpDelete, &zone.ClusterNode{Name: name}))
	}
	if s := l.Stats(); s != (Stats{}) || l.exact.size != 0 {
		t.Errorf("after deleting everything: %+v, %d indexed", s, l.exact.size)
	}
}

// TestLocatorMatchesRebuild applies many changes one by one and checks
// that the incremental index answers as one built from the final objects,
// Bits included: nested podCIDRs of other zones hold the endpoints.
func TestLocatorMatchesRebuild(t *testing.T) {
	var nodes []zone.Change
	for k := range 3 {
		nodes = append(nodes, node(fixture.Node{Name: fmt.Sprintf("node-%d", k), Labels: zoneLabels(fmt.Sprintf("z-node-%d", k), ""),
			PodCIDRs: []string{fmt.Sprintf("10.%d.0.0/16", k), fmt.Sprintf("10.%d.%d.0/24", (k+1)%3, k)}}))
	}
	l := New(new(sourcetest.Sink))
	l.Apply(nodes...)
	final := make(map[string]zone.Change)
	for round := range 40 {
		for i := range 50 {
			nodeName := fmt.Sprintf("node-%d", (i+round)%7)
			// Beside two endpoints that move, one that stays, its
			// readiness flipping, first in one round and last in the
			// next: an update keeps the claims of what it leaves alike.
			stays := fixture.Endpoint{Address: fmt.Sprintf("10.8.%d.1", i), NodeName: fmt.Sprintf("node-%d", i%3), Ready: new(round%3 != 0)}
			eps := []fixture.Endpoint{
				{Address: fmt.Sprintf("10.%d.%d.%d", i%3, round%5, i), NodeName: nodeName, Zone: "z-" + nodeName},
				{Address: fmt.Sprintf("10.9.%d.%d", i%11, round%2), NodeName: nodeName},
			}
			if round%4 < 2 {
				eps = append([]fixture.Endpoint{stays}, eps...)
			} else {
				eps = append(eps, stays)
			}
			c := slice(fixture.EndpointSlice{Name: fmt.Sprintf("s-%d", i), Endpoints: eps})
			if (i+round)%9 == 0 {
				c.Op = zone.OpDelete
				delete(final, c.Slice.Name)
			} else {
				final[c.Slice.Name] = c
			}
			l.Apply(c)
		}
	}
	fresh := New(new(sourcetest.Sink))
	fresh.Apply(nodes...)
	for _, c := range final {
		fresh.Apply(c)
	}
	for a := range 3 {
		for b := range 12 {
			for c := range 60 {
				for _, client := range []string{fmt.Sprintf("10.%d.%d.%d", a, b%5, c), fmt.Sprintf("10.9.%d.%d", b, c%2), fmt.Sprintf("10.8.%d.1", c)} {
					addr := netip.MustParseAddr(client)
					if got, want := l.Locate(addr), fresh.Locate(addr); got != want {
						t.Fatalf("Locate(%s) = %+v, a fresh index says %+v", client, got, want)
					}
				}
			}
		}
	}
	if l.exact.size != fresh.exact.size || len(l.claims) != len(fresh.claims) {
		t.Errorf("incremental index holds %d (%d claimed), fresh %d (%d)", l.exact.size, len(l.claims), fresh.exact.size, len(fresh.claims))
	}
}

func TestLocateAllocations(t *testing.T) {
	l := New(new(sourcetest.Sink))
	l.Apply(cluster()...)
	for _, client := range []string{"192.168.0.1", "10.0.1.5", "10.0.3.7", "fd10::1:0:0:0:1", "172.16.0.1"} {
		a := netip.MustParseAddr(client)
		if n := testing.AllocsPerRun(100, func() { l.Locate(a) }); n != 0 {
			t.Errorf("Locate(%s) allocates %v times", client, n)
		}
	}
}

// TestLocatorPublishesOnlyChanges: changes that move no claim (a
// Service, a slice's equivalent copy) leave the published index as it is.
func TestLocatorPublishesOnlyChanges(t *testing.T) {
	l := New(new(sourcetest.Sink))
	l.Apply(cluster()...)
	before := l.current.Load()
	l.Apply(zone.ServiceChange(zone.OpUpsert, &zone.Service{Namespace: "ns", Name: "svc"}))
	l.Apply(cluster()[3])
	if l.current.Load() != before {
		t.Error("a change that moved no claim published a new index")
	}
}
