package answer

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hdns-dev/hdns/internal/dnstest"
	k8s "github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

// prefixLocator places the clients of each prefix, the first that holds
// the address; every other client is unknown.
type prefixLocator []struct {
	prefix netip.Prefix
	loc    topology.Location
}

func (l prefixLocator) Locate(a netip.Addr) topology.Location {
	for _, e := range l {
		if e.prefix.Contains(a.Unmap()) {
			return e.loc
		}
	}
	return topology.Location{}
}

// scopeCluster is a locality zone: Services in front of one set of
// endpoints, in zone-a (nodes a1, a2) and zone-b (node b1), with the
// policies the ECS scope depends on; and a locator that places a /22 of
// pods in zone-a (a uniform podCIDR of a1), a node address in zone-b, an
// IPv6 /64 in zone-a, a /24 in zone-c, which has no endpoints, and a /24
// of node a3 in zone-a, which has none.
func scopeCluster(t testing.TB) *Responder {
	t.Helper()
	var objects []runtime.Object
	for _, svc := range []struct{ name, spec, distribution string }{
		{name: "zonal", spec: "prefer-zone"},
		{name: "close", distribution: "PreferClose"},
		{name: "plain", spec: "round-robin"},
		{name: "sticky", spec: "prefer-zone, sticky, first=1"},
		{name: "nodal", distribution: "PreferSameNode"},
		{name: "draining", spec: "prefer-zone, drain"},
		{name: "hinted", spec: "prefer-zone"},
	} {
		s := k8s.Service{Namespace: "loc", Name: svc.name, Headless: true}
		if svc.spec != "" {
			s.Annotations = map[string]string{zone.AnnotationPolicy: svc.spec}
		}
		api := s.API()
		if svc.distribution != "" {
			api.Spec.TrafficDistribution = &svc.distribution
		}
		endpoints := []k8s.Endpoint{
			{Address: "10.9.1.1", NodeName: "a1", Zone: "zone-a"}, {Address: "10.9.2.1", NodeName: "b1", Zone: "zone-b"},
			{Address: "10.9.1.2", NodeName: "a2", Zone: "zone-a"},
		}
		if svc.name == "draining" {
			// Its second pod of zone-a is terminating, still serving.
			endpoints[2] = k8s.Endpoint{Address: "10.9.1.3", NodeName: "a2", Zone: "zone-a", Ready: new(false), Serving: new(true), Terminating: new(true)}
		}
		if svc.name == "hinted" {
			// zone-b's pod is lent to zone-a, a2's to zone-b.
			endpoints[0].ForZones = []string{"zone-a"}
			endpoints[1].ForZones = []string{"zone-a"}
			endpoints[2].ForZones = []string{"zone-b"}
		}
		objects = append(objects, api, k8s.EndpointSlice{Namespace: "loc", Name: svc.name + "-1", Service: svc.name, Endpoints: endpoints}.API())
	}
	r := responderOf(fixture.Build(t, nil, objects...))
	loc := prefixLocator{
		{netip.MustParsePrefix("10.7.0.0/22"), topology.Location{Node: "a1", Zone: "zone-a", By: topology.ByPodCIDR, Bits: 22}},
		{netip.MustParsePrefix("10.7.8.5/32"), topology.Location{Node: "b1", Zone: "zone-b", By: topology.ByNodeAddress, Bits: 32}},
		{netip.MustParsePrefix("fd00:7::/64"), topology.Location{Node: "a1", Zone: "zone-a", By: topology.ByPodCIDR, Bits: 64}},
		{netip.MustParsePrefix("10.7.9.0/24"), topology.Location{Node: "c1", Zone: "zone-c", By: topology.ByPodCIDR, Bits: 24}},
		{netip.MustParsePrefix("10.7.4.0/24"), topology.Location{Node: "a3", Zone: "zone-a", By: topology.ByPodCIDR, Bits: 24}},
	}
	r.Locator = loc
	return r
}

// TestClientSubnetScope: where an answer depends on the client's place,
// the reply's ECS scope is the prefix that located the client, bounded
// by the query's source prefix; the address's whole source prefix for an
// answer that depends on the address (sticky) or on the client being
// unknown; 0 where the answer is the same for every client.
func TestClientSubnetScope(t *testing.T) {
	const (
		a1 = "%s.loc.svc.cluster.local. 5 IN A 10.9.1.1"
		a2 = "%s.loc.svc.cluster.local. 5 IN A 10.9.1.2"
		b1 = "%s.loc.svc.cluster.local. 5 IN A 10.9.2.1"
	)
	for _, tc := range []struct {
		name    string
		service string
		ecs     string // address/source prefix; "" for a query without ECS
		nilLoc  bool   // the responder has no locator
		answer  []string
		scope   int // -1: no ECS option in the reply
	}{
		{name: "podCIDR wider than the source prefix: its length", service: "zonal", ecs: "10.7.1.0/24", answer: []string{a1, a2}, scope: 22},
		{name: "podCIDR narrower than the source prefix: the source prefix", service: "zonal", ecs: "10.7.0.0/20", answer: []string{a1, a2}, scope: 20},
		{name: "node address: the whole address", service: "zonal", ecs: "10.7.8.5/32", answer: []string{b1}, scope: 32},
		{name: "IPv6 podCIDR", service: "zonal", ecs: "fd00:7::/56", answer: []string{a1, a2}, scope: 56},
		{name: "IPv6 podCIDR within the source", service: "zonal", ecs: "fd00:7::1/96", answer: []string{a1, a2}, scope: 64},
		{name: "a zone without endpoints gets them all, for its prefix", service: "zonal", ecs: "10.7.9.0/24", answer: []string{a1, a2, b1}, scope: 24},
		{name: "trafficDistribution PreferClose", service: "close", ecs: "10.7.2.0/24", answer: []string{a1, a2}, scope: 22},
		{name: "unknown client: every endpoint, for its source prefix only", service: "zonal", ecs: "198.51.100.0/24", answer: []string{a1, a2, b1}, scope: 24},
		{name: "a source prefix that masks the node address is unknown", service: "zonal", ecs: "10.7.8.0/24", answer: []string{a1, a2, b1}, scope: 24},
		{name: "no locality step: scope 0", service: "plain", ecs: "10.7.1.0/24", answer: []string{a1, a2, b1}, scope: 0},
		{name: "sticky after locality: the source prefix", service: "sticky", ecs: "10.7.1.0/24", scope: 24},
		{name: "no locator: nobody is placed, scope 0", service: "zonal", ecs: "10.7.1.0/24", nilLoc: true, answer: []string{a1, a2, b1}, scope: 0},
		{name: "source prefix 0: scope 0", service: "zonal", ecs: "10.7.1.0/0", answer: []string{a1, a2, b1}, scope: 0},
		{name: "no ECS in the query: none in the reply", service: "zonal", answer: []string{a1, a2, b1}, scope: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh zone for each question: the handouts of one
			// would make the next spill over.
			r := scopeCluster(t)
			if tc.nilLoc {
				r.Locator = nil
			}
			qname := tc.service + ".loc.svc.cluster.local."
			m := fixture.Query(qname, dns.TypeA)
			if tc.ecs != "" {
				p := netip.MustParsePrefix(tc.ecs)
				m = ecsQuery(qname, p.Addr(), uint8(p.Bits()))
			}
			reply := exchange(t, r, m, "udp")
			e, scope := replyECS(reply), -1
			if e != nil {
				scope = int(e.SourceScope)
				if p := netip.MustParsePrefix(tc.ecs); int(e.SourceNetmask) != p.Bits() || e.Address.String() != p.Masked().Addr().String() {
					t.Errorf("ECS %v does not echo the source %s", e, p.Masked())
				}
			}
			if scope != tc.scope {
				t.Errorf("ECS scope %d, want %d (-1: no option)", scope, tc.scope)
			}
			if tc.answer == nil {
				if len(reply.Answer) != 1 {
					t.Errorf("answer %v, want one record", reply.Answer)
				}
				return
			}
			var want []string
			for _, w := range tc.answer {
				want = append(want, fmt.Sprintf(w, tc.service))
			}
			got, want := dnstest.Strings(reply.Answer), canon(t, want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("answer\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestClientSubnetScopeFromLocator: with topology's Locator, a pod's
// answer is shared across its node's podCIDR while the podCIDR is
// uniform, an endpoint's too, and only with itself once another node's
// pod lies in that range.
func TestClientSubnetScopeFromLocator(t *testing.T) {
	svc := k8s.Service{Namespace: "loc", Name: "zonal", Headless: true, Annotations: map[string]string{zone.AnnotationPolicy: "prefer-zone"}}
	slice := k8s.EndpointSlice{Namespace: "loc", Name: "zonal-1", Service: "zonal", Endpoints: []k8s.Endpoint{
		{Address: "10.7.0.11", NodeName: "a1", Zone: "zone-a"}, {Address: "10.7.8.11", NodeName: "b1", Zone: "zone-b"},
	}}
	loc := topology.New(new(sourcetest.Sink))
	labels := func(z string) map[string]string { return map[string]string{corev1.LabelTopologyZone: z} }
	loc.Apply(
		zone.NodeChange(zone.OpUpsert, zone.ClusterNodeFromAPI(k8s.Node{Name: "a1", Labels: labels("zone-a"), InternalIP: "192.168.0.1", PodCIDRs: []string{"10.7.0.0/24"}}.API())),
		zone.NodeChange(zone.OpUpsert, zone.ClusterNodeFromAPI(k8s.Node{Name: "b1", Labels: labels("zone-b"), InternalIP: "192.168.0.2", PodCIDRs: []string{"10.7.8.0/24"}}.API())),
		zone.SliceChange(zone.OpUpsert, zone.EndpointSliceFromAPI(slice.API())),
	)
	stray := k8s.EndpointSlice{Namespace: "other", Name: "s-1", Service: "s", Endpoints: []k8s.Endpoint{{Address: "10.7.0.99", NodeName: "b1", Zone: "zone-b"}}}
	for _, step := range []struct {
		name   string
		apply  *k8s.EndpointSlice
		client string
		answer string
		scope  uint8
	}{
		{name: "a pod in a1's podCIDR", client: "10.7.0.50", answer: "10.7.0.11", scope: 24},
		{name: "an endpoint in a1's podCIDR", client: "10.7.0.11", answer: "10.7.0.11", scope: 24},
		{name: "b1's node address", client: "192.168.0.2", answer: "10.7.8.11", scope: 32},
		{name: "another node's pod in a1's podCIDR: the address only", apply: &stray, client: "10.7.0.50", answer: "10.7.0.11", scope: 32},
		{name: "that pod", client: "10.7.0.99", answer: "10.7.8.11", scope: 32},
	} {
		if step.apply != nil {
			loc.Apply(zone.SliceChange(zone.OpUpsert, zone.EndpointSliceFromAPI(step.apply.API())))
		}
		// A fresh zone for each question: the handouts of one would
		// make the next spill over.
		r := responderOf(fixture.Build(t, nil, svc.API(), slice.API()))
		r.Locator = loc
		reply := exchange(t, r, ecsQuery("zonal.loc.svc.cluster.local.", netip.MustParseAddr(step.client), 32), "udp")
		e := replyECS(reply)
		if e == nil || e.SourceScope != step.scope || len(reply.Answer) != 1 || reply.Answer[0].(*dns.A).A.String() != step.answer {
			t.Errorf("%s: answer %v, ECS %v; want %s with scope %d", step.name, reply.Answer, e, step.answer, step.scope)
		}
	}
}
