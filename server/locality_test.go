package server

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	k8s "github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

// fakeLocator places clients by their exact address.
type fakeLocator map[netip.Addr]topology.Location

func (f fakeLocator) Locate(a netip.Addr) topology.Location { return f[a] }

// zonedObjects are two headless Services in namespace loc, each with two
// endpoints in zone-a (10.9.1.x) and two in zone-b (10.9.2.x): "spec"
// with trafficDistribution PreferSameZone and the default policy, "annotated"
// with the policy "prefer-zone, least-loaded, first=1".
func zonedObjects() []runtime.Object {
	var objs []runtime.Object
	for _, name := range []string{"spec", "annotated"} {
		svc := k8s.Service{Namespace: "loc", Name: name, Headless: true}
		if name == "annotated" {
			svc.Annotations = map[string]string{zone.AnnotationPolicy: "prefer-zone, least-loaded, first=1"}
		}
		api := svc.API()
		if name == "spec" {
			api.Spec.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
		}
		slice := k8s.EndpointSlice{Namespace: "loc", Name: name + "-1", Service: name, Endpoints: []k8s.Endpoint{
			{Address: "10.9.1.1", NodeName: "a1", Zone: "zone-a"}, {Address: "10.9.1.2", NodeName: "a2", Zone: "zone-a"},
			{Address: "10.9.2.1", NodeName: "b1", Zone: "zone-b"}, {Address: "10.9.2.2", NodeName: "b2", Zone: "zone-b"},
		}}
		objs = append(objs, api, slice.API())
	}
	return objs
}

// TestAnswersFollowTheClientsZone asks real servers the same names as
// clients in zone-a, zone-b and nowhere (by ECS), and from the source
// address without ECS.
func TestAnswersFollowTheClientsZone(t *testing.T) {
	locator := fakeLocator{
		netip.MustParseAddr("10.1.0.5"):  {Node: "a1", Zone: "zone-a", By: topology.ByPodCIDR},
		netip.MustParseAddr("10.2.0.5"):  {Node: "b2", Zone: "zone-b", By: topology.ByPodCIDR},
		netip.MustParseAddr("127.0.0.1"): {Node: "b1", Zone: "zone-b", By: topology.ByNodeAddress},
	}
	zoneA, zoneB := []string{"10.9.1.1", "10.9.1.2"}, []string{"10.9.2.1", "10.9.2.2"}
	all := append(slices.Clone(zoneA), zoneB...)
	for _, tc := range []struct {
		name, client string // client "" asks without ECS, from 127.0.0.1
		want         []string
	}{
		{"spec", "10.1.0.5", zoneA},
		{"spec", "10.2.0.5", zoneB},
		{"spec", "10.3.0.5", all},
		{"spec", "", zoneB},
		{"annotated", "10.1.0.5", zoneA},
		{"annotated", "10.2.0.5", zoneB},
	} {
		m := fixture.Query(tc.name+".loc.svc.cluster.local.", dns.TypeA)
		if tc.client != "" {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
				SourceNetmask: 32, Address: netip.MustParseAddr(tc.client).AsSlice()})
		}
		// A fresh zone per question: answers from one zone only would
		// load its endpoints and spill over (see TestLocalitySpillsInProportion).
		r := responderOf(fixture.Build(t, nil, zonedObjects()...))
		r.Locator = locator
		s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: r})
		{
			var got []string
			for _, rr := range exchange(t, s, m, "udp").Answer {
				got = append(got, rr.(*dns.A).A.String())
			}
			slices.Sort(got)
			ok := slices.Equal(got, tc.want)
			if tc.name == "annotated" { // first=1: one of the zone's
				ok = len(got) == 1 && slices.Contains(tc.want, got[0])
			}
			if !ok {
				t.Fatalf("%s from %q: %v, want %v", tc.name, tc.client, got, tc.want)
			}
		}
	}
}
