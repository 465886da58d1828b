package answer

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"

	k8s "github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/topology"
	"github.com/hdns-dev/hdns/zone"
)

// zoneOf places every client in one zone.
type zoneOf string

func (z zoneOf) Locate(netip.Addr) topology.Location {
	return topology.Location{Zone: string(z), By: topology.ByPodCIDR}
}

// TestExplainShowsLocality: the explanation traces the locality step
// keeping the client's zone, and the answer follows.
func TestExplainShowsLocality(t *testing.T) {
	svc := k8s.Service{Namespace: "loc", Name: "web", Headless: true,
		Annotations: map[string]string{zone.AnnotationPolicy: "prefer-zone, least-loaded"}}
	slice := k8s.EndpointSlice{Namespace: "loc", Name: "web-1", Service: "web", Endpoints: []k8s.Endpoint{
		{Address: "10.9.1.1", NodeName: "a1", Zone: "zone-a"}, {Address: "10.9.2.1", NodeName: "b1", Zone: "zone-b"},
		{Address: "10.9.1.2", NodeName: "a2", Zone: "zone-a"},
	}}
	r := responderOf(fixture.Build(t, nil, svc.API(), slice.API()))
	for _, tc := range []struct {
		locator ClientLocator
		want    []string
	}{
		{zoneOf("zone-a"), []string{"10.9.1.1", "10.9.1.2"}},
		{zoneOf("zone-b"), []string{"10.9.2.1"}},
		{zoneOf(""), []string{"10.9.1.1", "10.9.1.2", "10.9.2.1"}},
		{nil, []string{"10.9.1.1", "10.9.1.2", "10.9.2.1"}},
	} {
		r.Locator = tc.locator
		e, err := r.Explain("web.loc.svc.cluster.local.", dns.TypeA, netip.MustParseAddr("10.7.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Steps) != 2 || e.Steps[0].Step != "prefer-zone" || len(e.Steps[0].Input) != 3 || len(e.Steps[0].Output) != len(tc.want) {
			t.Fatalf("%v: steps %+v, want prefer-zone keeping %d of 3", tc.locator, e.Steps, len(tc.want))
		}
		var got []string
		for _, rr := range e.Answer {
			got = append(got, rr[len(rr)-len("10.9.1.1"):])
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v: answer %v, want %v", tc.locator, got, tc.want)
		}
	}
}

// TestExplainPlacesCandidates: the explanation says why each candidate
// is in the answer or left out, seen from the located client, what the
// locality step made of the question, and the client prefix the answer
// depends on.
func TestExplainPlacesCandidates(t *testing.T) {
	for _, tc := range []struct {
		name, service, client string
		// loaded: the client's zone has been answered before, until its
		// load is above the threshold.
		loaded bool
		placed map[string]string // candidate key → placed
		note   string            // the first step's note
		prefix int
	}{
		{name: "the client's zone", service: "zonal", client: "10.7.1.1", note: policy.NoteKeptZone, prefix: 22,
			placed: map[string]string{"10.9.1.1": "same-node", "10.9.1.2": "same-zone", "10.9.2.1": "filtered by prefer-zone: other zone"}},
		{name: "spill-over", service: "zonal", client: "10.7.1.1", loaded: true, note: policy.NoteOverloaded, prefix: 22,
			placed: map[string]string{"10.9.1.1": "same-node", "10.9.1.2": "same-zone", "10.9.2.1": "spill-over: local load above threshold"}},
		{name: "a zone that never had endpoints", service: "zonal", client: "10.7.9.1", note: policy.NoteUnplaced, prefix: 24,
			placed: map[string]string{"10.9.1.1": "other zone", "10.9.1.2": "other zone", "10.9.2.1": "other zone"}},
		{name: "unknown client", service: "zonal", client: "198.51.100.1", note: policy.NoteUnplaced, prefix: 32,
			placed: map[string]string{"10.9.1.1": "unknown client", "10.9.1.2": "unknown client", "10.9.2.1": "unknown client"}},
		{name: "the client's node", service: "nodal", client: "10.7.1.1", note: policy.NoteKeptNode, prefix: 22,
			placed: map[string]string{"10.9.1.1": "same-node", "10.9.1.2": "filtered by prefer-node: other node", "10.9.2.1": "filtered by prefer-node: other zone"}},
		{name: "a Service without locality", service: "plain", client: "10.7.1.1", prefix: 0,
			placed: map[string]string{"10.9.1.1": "answered", "10.9.1.2": "answered", "10.9.2.1": "answered"}},
		{name: "not ready", service: "draining", client: "10.7.1.1", note: policy.NoteKeptZone, prefix: 22,
			placed: map[string]string{"10.9.1.1": "same-node", "10.9.1.3": "filtered by drain: not ready", "10.9.2.1": "filtered by prefer-zone: other zone"}},
		{name: "hints", service: "hinted", client: "10.7.1.1", note: policy.NoteKeptZone, prefix: 22,
			placed: map[string]string{"10.9.1.1": "same-node", "10.9.1.2": "filtered by prefer-zone: hinted for another zone", "10.9.2.1": "other zone, hinted for the client's zone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := scopeCluster(t)
			qname := tc.service + ".loc.svc.cluster.local."
			for n := 0; tc.loaded && len(exchange(t, r, ecsQuery(qname, netip.MustParseAddr(tc.client), 32), "udp").Answer) < 3; n++ {
				if n == 100 {
					t.Fatal("100 answers to zone-a did not make it spill over")
				}
			}
			e, err := r.Explain(qname, dns.TypeA, netip.MustParseAddr(tc.client))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range e.Candidates {
				got[c.Key] = c.Placed
			}
			if !maps.Equal(got, tc.placed) {
				t.Errorf("placed %v, want %v", got, tc.placed)
			}
			if len(e.Steps) == 0 || e.Steps[0].Note != tc.note {
				t.Errorf("steps %+v, want the first noting %q", e.Steps, tc.note)
			}
			if e.ClientPrefix != tc.prefix {
				t.Errorf("client prefix %d, want %d", e.ClientPrefix, tc.prefix)
			}
		})
	}
}
