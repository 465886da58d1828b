package answer

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"

	k8s "github.com/hdns-dev/hdns/internal/fixture"
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
