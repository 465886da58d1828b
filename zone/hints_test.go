package zone

import (
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/policy"
)

// hintedSlice is web's slice in namespace h: web-a in zone-a, web-b and
// web-c in zone-b, hinted as forZones says (nil: no hints).
func hintedSlice(forZones map[string][]string) *EndpointSlice {
	eps := []fixture.Endpoint{
		{Address: "10.9.0.1", Pod: "web-a", NodeName: "node-a", Zone: "zone-a"},
		{Address: "10.9.0.2", Pod: "web-b", NodeName: "node-b", Zone: "zone-b"},
		{Address: "10.9.0.3", Pod: "web-c", NodeName: "node-b", Zone: "zone-b"},
	}
	for i := range eps {
		eps[i].ForZones = forZones[eps[i].Pod]
	}
	return EndpointSliceFromAPI(fixture.EndpointSlice{Namespace: "h", Name: "web-1", Service: "web", Endpoints: eps}.API())
}

// TestHintsReachTheChain: a Service whose slices carry hints, with
// neither trafficDistribution nor a locality step, answers a client in a
// zone the endpoints hinted for it, and every endpoint when the hints are
// incomplete; a change of hints alone is published.
func TestHintsReachTheChain(t *testing.T) {
	p := NewPublisher(testOptions(t), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	svc := ServiceFromAPI(fixture.Service{Namespace: "h", Name: "web", Headless: true}.API())
	p.Replace([]*Service{svc}, []*EndpointSlice{hintedSlice(nil)})
	p.Rebuild()
	// answer is what the Service's A question answers a client in zone.
	answer := func(zone string) (string, []string) {
		t.Helper()
		_, n := p.Snapshot().Lookup("web.h.svc.cluster.local.")
		if n == nil || n.ChosenA == nil {
			t.Fatal("web has no A choice")
		}
		c := n.ChosenA
		out, _ := c.Set.Policy.Explain(&policy.Request{Zone: policy.PlaceOf(zone)}, c.Set.Candidates, c.In)
		var pods []string
		for _, i := range out {
			pods = append(pods, c.Set.Candidates[i].Key)
		}
		slices.Sort(pods)
		return c.Set.Policy.String(), pods
	}
	all := []string{"h/web-a", "h/web-b", "h/web-c"}
	for _, step := range []struct {
		name     string
		forZones map[string][]string
		zone     string
		chain    string
		want     []string
	}{
		{name: "no hints", zone: "zone-b", chain: "ordered", want: all},
		// web-c lends zone-b's capacity to zone-a, as the EndpointSlice
		// controller does for a zone with fewer endpoints than its share.
		{name: "zone hints", forZones: map[string][]string{"web-a": {"zone-a"}, "web-b": {"zone-b"}, "web-c": {"zone-a"}},
			zone: "zone-a", chain: "prefer-zone=by:hints, ordered", want: []string{"h/web-a", "h/web-c"}},
		{name: "hints alone changed", forZones: map[string][]string{"web-a": {"zone-a"}, "web-b": {"zone-b"}, "web-c": {"zone-b"}},
			zone: "zone-a", chain: "prefer-zone=by:hints, ordered", want: []string{"h/web-a"}},
		{name: "incomplete hints: ignored", forZones: map[string][]string{"web-a": {"zone-a"}, "web-b": {"zone-b"}},
			zone: "zone-b", chain: "prefer-zone=by:hints, ordered", want: all},
	} {
		p.Apply(SliceChange(OpUpsert, hintedSlice(step.forZones)))
		p.Rebuild()
		if chain, got := answer(step.zone); chain != step.chain || !slices.Equal(got, step.want) {
			t.Errorf("%s: client in %s answered %v by %q, want %v by %q", step.name, step.zone, got, chain, step.want, step.chain)
		}
	}
}

// TestParseManifestReadsHints: --manifests reads hints as the informers
// do.
func TestParseManifestReadsHints(t *testing.T) {
	_, sl, err := ParseManifest("f.yaml", []byte(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: ns, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  nodeName: n1
  zone: a
  hints: {forZones: [{name: a}, {name: b}], forNodes: [{name: n1}]}
`))
	want := Topology{NodeName: "n1", Zone: "a", ForZones: "a b", ForNodes: "n1"}
	if err != nil || len(sl) != 1 || len(sl[0].Endpoints) != 1 || sl[0].Endpoints[0].Topology == nil || *sl[0].Endpoints[0].Topology != want {
		t.Fatalf("slices %+v, err %v: want one endpoint at %+v", sl, err, want)
	}
}
