package manifests

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

func zoned(name, zoneName, ip, cidr string) *corev1.Node {
	return fixture.Node{Name: name, Labels: map[string]string{corev1.LabelTopologyZone: zoneName},
		InternalIP: ip, PodCIDRs: []string{cidr}}.API()
}

// TestSourceNodes reads Nodes from the YAML, through a Locator: they
// reach it before the first Replace, and an edit, a removal and a bad
// Node are handled as for the other kinds.
func TestSourceNodes(t *testing.T) {
	dir := t.TempDir()
	nodes, apps := filepath.Join(dir, "nodes.yaml"), filepath.Join(dir, "apps.yaml")
	writeFile(t, nodes, fixture.YAML(t, zoned("node-a", "zone-a", "192.168.0.1", "10.0.1.0/24"),
		zoned("node-b", "zone-b", "192.168.0.2", "10.0.2.0/24")))
	writeFile(t, apps, fixture.YAML(t, fixture.Service{Namespace: "x", Name: "web", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "x", Name: "web-1", Service: "web", Endpoints: []fixture.Endpoint{
			{Address: "10.9.0.1", Pod: "web-0", NodeName: "node-b", Zone: "zone-b"}}}.API()))
	var sink sourcetest.Sink
	loc := topology.New(&sink)
	src := &Source{Path: dir}
	if err := src.Load(loc); err != nil {
		t.Fatal(err)
	}
	at := func(client string) topology.Location { return loc.Locate(netip.MustParseAddr(client)) }
	for _, c := range []struct {
		client string
		want   topology.Location
	}{
		{client: "192.168.0.1", want: topology.Location{Node: "node-a", Zone: "zone-a", By: topology.ByNodeAddress, Bits: 32}},
		{client: "10.0.2.7", want: topology.Location{Node: "node-b", Zone: "zone-b", By: topology.ByPodCIDR, Bits: 24}},
		{client: "10.9.0.1", want: topology.Location{Node: "node-b", Zone: "zone-b", By: topology.ByEndpoint, Bits: 32}},
	} {
		if got := at(c.client); got != c.want {
			t.Errorf("Locate(%s) = %+v, want %+v", c.client, got, c.want)
		}
	}
	if _, _, ok := sink.List(); !ok || len(sink.Nodes()) != 2 || sink.Changes()[0].Kind != zone.ObjectNode {
		t.Errorf("the sink after Load: synced %v, %d nodes; want the Nodes applied first", ok, len(sink.Nodes()))
	}

	// node-a moves zone, node-b goes.
	writeFile(t, nodes, fixture.YAML(t, zoned("node-a", "zone-c", "192.168.0.1", "10.0.1.0/24")))
	if errs, err := src.poll(loc); err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	if got := at("10.0.1.1"); got.Zone != "zone-c" {
		t.Errorf("after the edit node-a's pods are at %+v", got)
	}
	if got := at("10.9.0.1"); got != (topology.Location{Node: "node-b", Zone: "zone-b", By: topology.ByEndpoint, Bits: 32}) {
		t.Errorf("a pod of the removed node-b is at %+v, want its endpoint's node and zone", got)
	}

	// A Node defined twice, or with a podCIDR that does not parse, is
	// refused with its file and keeps the last good objects.
	writeFile(t, filepath.Join(dir, "dup.yaml"), fixture.YAML(t, zoned("node-a", "zone-z", "192.168.0.9", "10.0.9.0/24")))
	bad := strings.Replace(fixture.YAML(t, zoned("node-q", "zone-q", "192.168.0.5", "10.0.5.0/24")), "10.0.5.0/24", "10.0.5.0/33", -1)
	writeFile(t, filepath.Join(dir, "bad.yaml"), bad)
	errs, err := src.poll(loc)
	if err != nil || len(errs) != 2 {
		t.Fatalf("errors %v %v, want the duplicate and the bad podCIDR", err, errs)
	}
	for _, want := range []string{"Node node-a is defined twice", "Node node-q: podCIDR"} {
		if !strings.Contains(errs[0].Error()+errs[1].Error(), want) {
			t.Errorf("errors %v do not say %q", errs, want)
		}
	}
	if got := at("192.168.0.1"); got.Node != "node-a" || got.Zone != "zone-c" {
		t.Errorf("after the refused files node-a is at %+v", got)
	}
}
