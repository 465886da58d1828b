package topology

import (
	"net/netip"
	"testing"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/zone"
)

// TestLocateBitsUniform: a client's Bits is the length of the podCIDR
// holding it only while every address in the podCIDR is located alike,
// and comes back when what made it mixed goes.
func TestLocateBitsUniform(t *testing.T) {
	l := New(new(sourcetest.Sink))
	l.Apply(cluster()...)
	stray := slice(fixture.EndpointSlice{Name: "stray", Endpoints: []fixture.Endpoint{
		{Address: "10.0.1.99", Pod: "s", NodeName: "node-b", Zone: "zone-b"}}})
	own := slice(fixture.EndpointSlice{Name: "own", Endpoints: []fixture.Endpoint{
		{Address: "10.0.1.98", Pod: "o", NodeName: "node-a", Zone: "zone-a"}}})
	hostX := node(fixture.Node{Name: "node-x", Labels: zoneLabels("zone-x", ""), InternalIP: "10.0.1.200"})
	inner := node(fixture.Node{Name: "node-i", Labels: zoneLabels("zone-i", ""), PodCIDRs: []string{"10.0.1.128/25"}})
	unlabelled := node(fixture.Node{Name: "node-u", PodCIDRs: []string{"10.0.5.0/24"}})
	zoned := slice(fixture.EndpointSlice{Name: "zoned", Endpoints: []fixture.Endpoint{
		{Address: "10.0.5.5", Pod: "z", NodeName: "node-u", Zone: "zone-u"}}})
	undo := func(c zone.Change) zone.Change { c.Op = zone.OpDelete; return c }
	for _, step := range []struct {
		name   string
		change zone.Change
		client string
		bits   uint8
	}{
		{name: "uniform", client: "10.0.1.7", bits: 24},
		{name: "another node's pod inside", change: stray, client: "10.0.1.7", bits: 32},
		{name: "that pod itself", client: "10.0.1.99", bits: 32},
		{name: "the other node's pod in its own range stays uniform", client: "10.0.2.7", bits: 24},
		{name: "the stray pod gone", change: undo(stray), client: "10.0.1.7", bits: 24},
		{name: "the node's own pod inside", change: own, client: "10.0.1.7", bits: 24},
		{name: "that pod itself: its node's prefix", client: "10.0.1.98", bits: 24},
		{name: "another node's address inside", change: hostX, client: "10.0.1.7", bits: 32},
		{name: "that node gone", change: undo(hostX), client: "10.0.1.7", bits: 24},
		{name: "a longer podCIDR of another zone inside", change: inner, client: "10.0.1.7", bits: 32},
		{name: "the longer podCIDR itself", client: "10.0.1.130", bits: 25},
		{name: "the longer podCIDR gone", change: undo(inner), client: "10.0.1.7", bits: 24},
		{name: "a node without zone label", change: unlabelled, client: "10.0.5.7", bits: 24},
		{name: "its pod's zone field places that pod elsewhere", change: zoned, client: "10.0.5.7", bits: 32},
	} {
		if step.change.Kind != 0 || step.change.Node != nil || step.change.Slice != nil {
			l.Apply(step.change)
		}
		if got := l.Locate(netip.MustParseAddr(step.client)); got.Bits != step.bits {
			t.Errorf("%s: Locate(%s) = %+v, want Bits %d", step.name, step.client, got, step.bits)
		}
	}
}
