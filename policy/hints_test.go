package policy

import (
	"slices"
	"testing"
)

// hinted returns spread's six endpoints with hints: hints[i] gives
// endpoint i's forZones and forNodes ("" for none).
func hinted(hints [6][2]string) []Endpoint {
	cands := spread()
	for i, h := range hints {
		cands[i].Hints = hintSets.intern(h[0], h[1])
	}
	return cands
}

// ownZones hints every endpoint of spread for its own zone, as the
// EndpointSlice controller does for PreferSameZone.
var ownZones = [6][2]string{{"zone-a", ""}, {"zone-a", ""}, {"zone-b", ""}, {"zone-b", ""}, {"zone-c", ""}, {"zone-c", ""}}

// TestLocalityFollowsHints: where every ready candidate has hints of a
// level, the locality step keeps those hinted for the client's place
// instead of those at it; otherwise the hints are ignored, as kube-proxy
// ignores them.
func TestLocalityFollowsHints(t *testing.T) {
	places.intern("zone-d")
	// Endpoints of zone-c are hinted for zone-a too, as the controller
	// does to balance a zone with few endpoints.
	lent := ownZones
	lent[4][0], lent[5][0] = "zone-c zone-a", "zone-c"
	for _, tc := range []struct {
		name, spec string
		node, zone string
		hints      [6][2]string
		setup      func(cands []Endpoint)
		want       []int
	}{
		{name: "own zones", spec: "prefer-zone", zone: "zone-a", hints: ownZones, want: []int{0, 1}},
		{name: "hinted for another zone", spec: "prefer-zone", zone: "zone-a", hints: lent, want: []int{0, 1, 4}},
		{name: "hinted away from its zone", spec: "prefer-zone", zone: "zone-b",
			hints: [6][2]string{{"zone-a", ""}, {"zone-a", ""}, {"zone-a", ""}, {"zone-b", ""}, {"zone-c", ""}, {"zone-c", ""}}, want: []int{3}},
		{name: "one ready endpoint unhinted: hints ignored", spec: "prefer-zone", zone: "zone-b",
			hints: [6][2]string{{"zone-a", ""}, {"zone-a", ""}, {"zone-a", ""}, {"zone-b", ""}, {"zone-c", ""}, {}}, want: []int{2, 3}},
		{name: "unhinted endpoint not ready: hints kept", spec: "prefer-zone", zone: "zone-b",
			hints: [6][2]string{{"zone-a", ""}, {"zone-a", ""}, {"zone-a", ""}, {"zone-b", ""}, {"zone-c", ""}, {}},
			setup: func(c []Endpoint) { c[5].Ready = false }, want: []int{3}},
		{name: "no endpoint hinted for the zone: all", spec: "prefer-zone", zone: "zone-d", hints: ownZones, want: []int{0, 1, 2, 3, 4, 5}},
		{name: "unknown client: all", spec: "prefer-zone", hints: ownZones, want: []int{0, 1, 2, 3, 4, 5}},
		{name: "min counts the hinted", spec: "prefer-zone=min:3", zone: "zone-a", hints: lent, want: []int{0, 1, 4}},
		{name: "too few hinted: spill", spec: "prefer-zone=min:4", zone: "zone-a", hints: lent, want: []int{0, 1, 2, 3, 4, 5}},
		{name: "hinted overloaded: spill", spec: "prefer-zone", zone: "zone-a", hints: lent,
			setup: func(c []Endpoint) { c[0].Ledger.Add(30); c[1].Ledger.Add(30); c[4].Ledger.Add(30); c[2].Ledger.Add(10) },
			want:  []int{0, 1, 2, 3, 4, 5}},
		{name: "node hints", spec: "prefer-node", node: "a1", zone: "zone-a",
			hints: [6][2]string{{"zone-a", "a2"}, {"zone-a", "a1"}, {"zone-b", "b1"}, {"zone-b", "b2"}, {"zone-c", "c1"}, {"zone-c", "c2"}}, want: []int{1}},
		{name: "no node hint for the node: zone hints", spec: "prefer-node", node: "a1", zone: "zone-a",
			hints: [6][2]string{{"zone-a", "a2"}, {"zone-a", "a2"}, {"zone-b", "b1"}, {"zone-b", "b2"}, {"zone-c", "c1"}, {"zone-c", "c2"}}, want: []int{0, 1}},
		{name: "node hints missing on one: the node", spec: "prefer-node", node: "a1", zone: "zone-a",
			hints: [6][2]string{{"zone-a", "a2"}, {"zone-a", ""}, {"zone-b", "b1"}, {"zone-b", "b2"}, {"zone-c", "c1"}, {"zone-c", "c2"}}, want: []int{0}},
		{name: "prefer-zone reads no node hints", spec: "prefer-zone", node: "a1", zone: "zone-b",
			hints: [6][2]string{{"", "a1"}, {"", "a1"}, {"", "b1"}, {"", "b2"}, {"", "c1"}, {"", "c2"}}, want: []int{2, 3}},
		{name: "by hints", spec: "prefer-zone=by:hints", zone: "zone-a", hints: lent, want: []int{0, 1, 4}},
		{name: "by hints, one ready endpoint unhinted: all", spec: "prefer-zone=by:hints", zone: "zone-b",
			hints: [6][2]string{{"zone-a", ""}, {"zone-a", ""}, {"zone-a", ""}, {"zone-b", ""}, {"zone-c", ""}, {}}, want: []int{0, 1, 2, 3, 4, 5}},
		{name: "by hints, no hints: all", spec: "prefer-zone=by:hints", zone: "zone-a", want: []int{0, 1, 2, 3, 4, 5}},
		{name: "by hints, unhinted endpoint not ready", spec: "prefer-zone=by:hints", zone: "zone-c",
			hints: [6][2]string{{"zone-a", ""}, {"zone-a", ""}, {"zone-b", ""}, {"zone-b", ""}, {"zone-c", ""}, {}},
			setup: func(c []Endpoint) { c[5].Ready = false }, want: []int{4}},
		{name: "by hints, overloaded: spill", spec: "prefer-zone=by:hints", zone: "zone-a", hints: ownZones,
			setup: func(c []Endpoint) { c[0].Ledger.Add(30); c[1].Ledger.Add(30); c[2].Ledger.Add(10) },
			want:  []int{0, 1, 2, 3, 4, 5}},
		{name: "by hints, node hints", spec: "prefer-node=by:hints", node: "b1", zone: "zone-b",
			hints: [6][2]string{{"zone-a", "a1"}, {"zone-a", "a2"}, {"zone-b", "b2 b1"}, {"zone-b", "b2"}, {"zone-c", "c1"}, {"zone-c", "c2"}}, want: []int{2}},
		{name: "by hints, node hints missing: zone hints", spec: "prefer-node=by:hints", node: "b1", zone: "zone-b",
			hints: ownZones, want: []int{2, 3}},
		{name: "by hints, nothing hinted for the zone: all", spec: "prefer-node=by:hints", node: "b1", zone: "zone-d",
			hints: ownZones, want: []int{0, 1, 2, 3, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands := hinted(tc.hints)
			if tc.setup != nil {
				tc.setup(cands)
			}
			out, _ := mustChain(t, tc.spec).Explain(from(tc.node, tc.zone), cands, indices(6))
			if !slices.Equal(out, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.spec, out, tc.want)
			}
		})
	}
}

// TestLocalityWithHintsComposes: the steps after a locality step that
// follows hints order and subset the hinted candidates only.
func TestLocalityWithHintsComposes(t *testing.T) {
	lent := ownZones
	lent[4][0] = "zone-c zone-a"
	cands := hinted(lent)
	// The hinted candidates' mean stays below the others': no spill-over.
	for i, v := range []float32{10, 10, 10, 10, 2, 10} {
		cands[i].Ledger.Add(v)
	}
	cands[0].Weight = 0
	for _, tc := range []struct {
		spec string
		want [][]int // the answers allowed
	}{
		{spec: "prefer-zone=by:hints, least-loaded, first=1", want: [][]int{{4}}},
		{spec: "prefer-zone, least-loaded, first=1", want: [][]int{{4}}},
		{spec: "prefer-zone=by:hints, weighted, first=2", want: [][]int{{1, 4}, {4, 1}}},
		{spec: "prefer-zone=by:hints, sticky, first=1", want: [][]int{{0}, {1}, {4}}},
		{spec: "prefer-zone=by:hints, first=2", want: [][]int{{0, 1}}},
	} {
		for seed := range uint64(20) {
			req := seeded(seed)
			req.Zone = PlaceOf("zone-a")
			out, _ := mustChain(t, tc.spec).Explain(req, cands, indices(6))
			if !slices.ContainsFunc(tc.want, func(w []int) bool { return slices.Equal(w, out) }) {
				t.Fatalf("seed %d: %s = %v, want one of %v", seed, tc.spec, out, tc.want)
			}
		}
	}
}

func TestHintsAddTheStep(t *testing.T) {
	comp, err := NewCompiler("least-loaded")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		annotation, distribution string
		zones, nodes             bool
		want                     string
	}{
		{zones: true, want: "prefer-zone=by:hints, least-loaded"},
		{zones: true, nodes: true, want: "prefer-node=by:hints, least-loaded"},
		{nodes: true, want: "prefer-node=by:hints, least-loaded"},
		{want: "least-loaded"},
		{distribution: TrafficPreferSameZone, nodes: true, want: "prefer-zone, least-loaded"},
		{distribution: TrafficPreferSameNode, want: "prefer-node, least-loaded"},
		{annotation: "prefer-zone=min:2, first=1", nodes: true, want: "prefer-zone=min:2, first=1"},
		{annotation: "weighted, first=2", zones: true, want: "prefer-zone=by:hints, weighted, first=2"},
	} {
		sp := ServicePolicy{Service: "ns/web", Annotation: tc.annotation, TrafficDistribution: tc.distribution,
			Hints: HintedDistribution(tc.zones, tc.nodes)}
		c, err := comp.Compile(sp)
		if err != nil {
			t.Fatal(err)
		}
		if c.String() != tc.want {
			t.Errorf("%+v: chain %q, want %q", tc, c.String(), tc.want)
		}
	}
}

func TestBindInternsHints(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	sc := comp.CompileService(ServicePolicy{Service: "ns/web"})
	ids := []EndpointID{
		{Key: "ns/p0", Zone: "hz-1", ForZones: "hz-1 hz-2"},
		{Key: "ns/p1", Zone: "hz-2", ForZones: "hz-1 hz-2"},
		{Key: "ns/p2", Node: "hn-1", ForZones: "hz-1", ForNodes: "hn-1 hn-1"},
		{Key: "ns/p3"},
		{Key: "ns/p4", ForZones: " "},
	}
	out := make([]Endpoint, len(ids))
	sc.Bind(ids, out)
	z1, z2, n1 := PlaceOf("hz-1"), PlaceOf("hz-2"), PlaceOf("hn-1")
	sets := hintSets.load()
	if h := sets[out[0].Hints]; out[0].Hints == NoHints || out[0].Hints != out[1].Hints || !slices.Equal(h.zones, []Place{z1, z2}) || h.nodes != nil {
		t.Errorf("shared zone hints: %v %+v, %v", out[0].Hints, h, out[1].Hints)
	}
	if h := sets[out[2].Hints]; !slices.Equal(h.zones, []Place{z1}) || !slices.Equal(h.nodes, []Place{n1}) {
		t.Errorf("node hints: %+v", h)
	}
	if out[3].Hints != NoHints || out[4].Hints != NoHints {
		t.Errorf("endpoints without hints have %v, %v", out[3].Hints, out[4].Hints)
	}
}

func TestLocalityWithHintsPicksWithoutAllocating(t *testing.T) {
	expectPicksWithoutAllocating(t, hinted(ownZones))
}
