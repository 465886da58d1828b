package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// spread returns six endpoints: 0 and 1 in zone-a (nodes a1, a2), 2 and 3
// in zone-b (b1, b2), 4 and 5 in zone-c (c1, c2).
func spread() []Endpoint {
	cands := candidates(6)
	nodes := []string{"a1", "a2", "b1", "b2", "c1", "c2"}
	for i := range cands {
		cands[i].Node = places.intern(nodes[i])
		cands[i].Zone = places.intern("zone-" + nodes[i][:1])
	}
	return cands
}

// from is a request from a client on node in zone ("" for unknown).
func from(node, zone string) *Request {
	req := seeded(1)
	req.Node, req.Zone = PlaceOf(node), PlaceOf(zone)
	return req
}

func TestLocalityKeepsTheClientsPlace(t *testing.T) {
	places.intern("zone-d") // a zone the cluster knows, without endpoints
	for _, tc := range []struct {
		name, spec string
		node, zone string
		setup      func(cands []Endpoint)
		want       []int
		note       string // the step's trace note
	}{
		{name: "zone a", spec: "prefer-zone", node: "a2", zone: "zone-a", want: []int{0, 1}, note: NoteKeptZone},
		{name: "zone b", spec: "prefer-zone", node: "b1", zone: "zone-b", want: []int{2, 3}, note: NoteKeptZone},
		{name: "unknown client", spec: "prefer-zone", want: []int{0, 1, 2, 3, 4, 5}, note: NoteUnplaced},
		{name: "zone without endpoints", spec: "prefer-zone", zone: "zone-d", want: []int{0, 1, 2, 3, 4, 5}, note: NoteNoneLocal},
		{name: "node first", spec: "prefer-node", node: "b2", zone: "zone-b", want: []int{3}, note: NoteKeptNode},
		{name: "node unknown: its zone", spec: "prefer-node", node: "b9", zone: "zone-b", want: []int{2, 3}, note: NoteKeptZone},
		{name: "node not ready: its zone", spec: "prefer-node", node: "b2", zone: "zone-b",
			setup: func(c []Endpoint) { c[3].Ready = false }, want: []int{2, 3}, note: NoteKeptZone},
		{name: "too few ready: spill", spec: "prefer-zone=min:2", node: "a1", zone: "zone-a",
			setup: func(c []Endpoint) { c[1].Ready = false }, want: []int{0, 1, 2, 3, 4, 5}, note: NoteTooFewReady},
		{name: "enough ready", spec: "prefer-zone=min:2", node: "a1", zone: "zone-a", want: []int{0, 1}, note: NoteKeptZone},
		{name: "overloaded: spill", spec: "prefer-zone", zone: "zone-a",
			setup: func(c []Endpoint) { c[0].Ledger.Add(30); c[1].Ledger.Add(30); c[2].Ledger.Add(10) },
			want:  []int{0, 1, 2, 3, 4, 5}, note: NoteOverloaded},
		{name: "loaded within the threshold", spec: "prefer-zone=over:20", zone: "zone-a",
			setup: func(c []Endpoint) { c[0].Ledger.Add(30); c[1].Ledger.Add(30); c[2].Ledger.Add(10) },
			want:  []int{0, 1}, note: NoteKeptZone},
		{name: "no load anywhere", spec: "prefer-zone=over:0", zone: "zone-c", want: []int{4, 5}, note: NoteKeptZone},
		{name: "node not ready, zone too few: the zone says why", spec: "prefer-node=min:2", node: "b2", zone: "zone-b",
			setup: func(c []Endpoint) { c[3].Ready = false }, want: []int{0, 1, 2, 3, 4, 5}, note: NoteTooFewReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands := spread()
			if tc.setup != nil {
				tc.setup(cands)
			}
			out, trace := mustChain(t, tc.spec).Explain(from(tc.node, tc.zone), cands, indices(6))
			if !slices.Equal(out, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.spec, out, tc.want)
			}
			if trace[0].Note != tc.note {
				t.Errorf("%s: note %q, want %q", tc.spec, trace[0].Note, tc.note)
			}
		})
	}
}

// TestLocalityComposes: the steps after a locality step order and subset
// the local candidates only.
func TestLocalityComposes(t *testing.T) {
	cands := spread()
	// zone-a's mean stays below the others': no spill-over.
	for i, v := range []float32{10, 2, 10, 10, 10, 10} {
		cands[i].Ledger.Add(v)
	}
	for seed := range uint64(30) {
		req := seeded(seed)
		req.Zone = PlaceOf("zone-a")
		out, _ := mustChain(t, "prefer-zone, least-loaded, first=1").Explain(req, cands, indices(6))
		if !slices.Equal(out, []int{1}) {
			t.Fatalf("seed %d: prefer-zone, least-loaded, first=1 = %v, want the least loaded of zone-a, [1]", seed, out)
		}
		for _, spec := range []string{"prefer-zone, weighted, first=1", "prefer-zone, sticky, first=1", "prefer-zone, round-robin, first=2"} {
			out, _ := mustChain(t, spec).Explain(req, cands, indices(6))
			if len(out) == 0 || slices.ContainsFunc(out, func(i int) bool { return i > 1 }) {
				t.Fatalf("seed %d: %s = %v, want places of zone-a only", seed, spec, out)
			}
		}
	}
	var s Scratch
	req := seeded(3)
	req.Zone = PlaceOf("zone-b")
	if out := mustChain(t, "prefer-zone, first=1").Pick(req, cands, indices(6), nil, &s); !slices.Equal(out, []int{2}) {
		t.Errorf("Pick: %v, want [2]", out)
	}
}

func TestLocalityArgsAndTraits(t *testing.T) {
	for _, bad := range []string{"prefer-zone=min:0", "prefer-zone=over:-1", "prefer-zone=near:1", "prefer-node=min:x"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
	c := mustChain(t, "prefer-node=min:2 over:0.5, least-loaded")
	// Not ReadsClient: the answer depends on the client's place, not its
	// address, and the ECS scope is the prefix that located it.
	if !c.UsesLocation() || c.UsesClient() || !c.UsesLoad() {
		t.Errorf("traits %06b: want ReadsLocation, ReadsLoad, not ReadsClient", c.Traits())
	}
	if mustChain(t, "least-loaded, first=1").UsesLocation() {
		t.Error("least-loaded reads the location")
	}
}

func TestTrafficDistributionAddsTheStep(t *testing.T) {
	comp, err := NewCompiler("least-loaded")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		annotation, distribution, want string
	}{
		{"", TrafficPreferSameZone, "prefer-zone, least-loaded"},
		{"", TrafficPreferClose, "prefer-zone, least-loaded"},
		{"", TrafficPreferSameNode, "prefer-node, least-loaded"},
		{"", "", "least-loaded"},
		{"weighted, first=2", TrafficPreferSameZone, "prefer-zone, weighted, first=2"},
		{"prefer-node=min:2, least-loaded", TrafficPreferSameZone, "prefer-node=min:2, least-loaded"},
		{"", "SomethingNew", "least-loaded"},
	} {
		c, err := comp.Compile(ServicePolicy{Service: "ns/web", Annotation: tc.annotation, TrafficDistribution: tc.distribution})
		if err != nil {
			t.Fatal(err)
		}
		if c.String() != tc.want {
			t.Errorf("%q with %q: chain %q, want %q", tc.annotation, tc.distribution, c.String(), tc.want)
		}
	}
}

func TestBindInternsPlaces(t *testing.T) {
	comp, err := NewCompiler("prefer-zone")
	if err != nil {
		t.Fatal(err)
	}
	sc := comp.CompileService(ServicePolicy{Service: "ns/web"})
	ids := []EndpointID{{Key: "ns/p0", Node: "n-1", Zone: "z-1"}, {Key: "ns/p1", Node: "n-2", Zone: "z-1"}, {Key: "ns/p2"}}
	out := make([]Endpoint, len(ids))
	sc.Bind(ids, out)
	if out[0].Zone == NoPlace || out[0].Zone != out[1].Zone || out[0].Node == out[1].Node || out[0].Zone != PlaceOf("z-1") {
		t.Errorf("places %+v", out)
	}
	if out[2].Node != NoPlace || out[2].Zone != NoPlace || PlaceOf("") != NoPlace || PlaceOf(strings.Repeat("x", 3)) != NoPlace {
		t.Errorf("unknown places are not NoPlace: %+v", out[2])
	}
}

// TestLocalitySpillsInProportion: when only zone-a asks, its endpoints
// take answers until their load score is 1+over times the others', then
// share them: with over:1 and as many endpoints in each zone, about two
// thirds of the first places stay in zone-a.
func TestLocalitySpillsInProportion(t *testing.T) {
	c := mustChain(t, "prefer-zone=over:1, least-loaded, first=1")
	cands := spread()[:4] // zone-a: 0, 1; zone-b: 2, 3
	var s Scratch
	local := 0
	const n = 600
	for k := range n {
		req := seeded(uint64(k))
		req.Zone = PlaceOf("zone-a")
		req.Client = netip.AddrFrom4([4]byte{10, 1, byte(k >> 8), byte(k)}) // no repeats of one client's question
		if out := c.Pick(req, cands, indices(4), nil, &s); out[0] <= 1 {
			local++
		}
	}
	if share := float64(local) / n; share < 0.55 || share > 0.8 {
		t.Errorf("%d of %d first places in zone-a (%.2f), want about 2/3", local, n, share)
	}
}

func TestLocalityPicksWithoutAllocating(t *testing.T) {
	expectPicksWithoutAllocating(t, spread())
}

// expectPicksWithoutAllocating fails t when a locality chain's pick over
// the first six of cands, for a client on b1 in zone-b, allocates.
func expectPicksWithoutAllocating(t *testing.T, cands []Endpoint) {
	t.Helper()
	c := mustChain(t, "prefer-node, least-loaded, first=1")
	in := indices(6)
	var s Scratch
	req := from("b1", "zone-b")
	out := make([]int, 0, 8)
	c.Pick(req, cands, in, out, &s)
	if n := testing.AllocsPerRun(100, func() { c.Pick(req, cands, in, out[:0], &s) }); n != 0 {
		t.Errorf("%v allocations per pick", n)
	}
}
