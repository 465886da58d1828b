package policy

import (
	"math"
	"strings"
	"testing"
)

// TestBindWiresEndpoints: Bind gives each endpoint its weight (by Pod
// name, else hostname, else 1), its ledger entry, a live cell only for
// Pod endpoints of a chain that reads load under the Service's query, and
// seeds a new entry with its peers' mean; CompileService reports bad
// weights without replacing the chain.
func TestBindWiresEndpoints(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	comp.SetDefaultLoadQuery("default_q")
	ids := []EndpointID{
		{Key: "ns/web-0", PodName: "web-0", Hostname: "web-0", Ready: true},
		{Key: "ns/web-1", PodName: "web-1", Hostname: "db", Ready: true},
		{Key: "10.0.0.9", Hostname: "10-0-0-9", Serving: true, Terminating: true},
	}
	comp.Ledger("ns/web-0").Add(10)
	comp.Ledger("ns/web-1").Add(20)

	sc := comp.CompileService(ServicePolicy{Service: "ns/web", Annotation: "least-loaded", Weights: "web-0=3, db=2", LoadQuery: "own_q"})
	if sc.Err != nil || sc.Chain.String() != "least-loaded" {
		t.Fatalf("chain %v, err %v", sc.Chain, sc.Err)
	}
	out := make([]Endpoint, len(ids))
	sc.Bind(ids, out)
	for i, want := range []float32{3, 2, 1} {
		if out[i].Weight != want || out[i].Key != ids[i].Key || out[i].Ledger != comp.Ledger(ids[i].Key) {
			t.Errorf("endpoint %d: weight %v key %q ledger %p; want %v, %q, the Compiler's", i, out[i].Weight, out[i].Key, out[i].Ledger, want, ids[i].Key)
		}
	}
	if out[0].Live != comp.Live("own_q", "ns/web-0") || out[2].Live != nil {
		t.Error("live cells: want the Pod endpoints' under the annotation's query, none for an address")
	}
	if !out[2].Terminating || !out[2].Serving || out[2].Ready {
		t.Errorf("conditions not copied: %+v", out[2])
	}
	if v := out[2].Ledger.Value(); math.Abs(v-15) > 0.5 {
		t.Errorf("new endpoint's ledger %v, want its peers' mean 15", v)
	}

	bad := comp.CompileService(ServicePolicy{Service: "ns/b", Annotation: "weighted", Weights: "web-0=lots"})
	if bad.Err == nil || !strings.Contains(bad.Err.Error(), "every endpoint weighs 1") || bad.Chain.String() != "weighted" {
		t.Errorf("bad weights: chain %v, err %v", bad.Chain, bad.Err)
	}
	bad.Bind(ids[:1], out[:1])
	if out[0].Weight != 1 || out[0].Live != nil {
		t.Errorf("bad weights, a chain that reads no load: weight %v live %p; want 1, no live cell", out[0].Weight, out[0].Live)
	}
}

// TestBindAfterPrevious: binding after the previous build's endpoints
// (an endpoint dropped, one added, the others in order) gives every
// endpoint the Compiler's own ledger entry, as a bind without them does.
func TestBindAfterPrevious(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	ids := func(keys ...string) []EndpointID {
		out := make([]EndpointID, len(keys))
		for i, k := range keys {
			out[i] = EndpointID{Key: k, Ready: true}
		}
		return out
	}
	sc := comp.CompileService(ServicePolicy{Service: "ns/web"})
	first := make([]Endpoint, 4)
	sc.Bind(ids("a", "b", "c", "d"), first)
	comp.SweepServices([]string{"ns/web"})

	next := comp.CompileService(ServicePolicy{Service: "ns/web"})
	next.Previous = first
	now := ids("a", "c", "x", "d", "y")
	out := make([]Endpoint, len(now))
	next.Bind(now, out)
	for i, id := range now {
		if out[i].Ledger == nil || out[i].Ledger != comp.Ledger(id.Key) {
			t.Errorf("%s: ledger %p, want the Compiler's %p", id.Key, out[i].Ledger, comp.Ledger(id.Key))
		}
	}
	if out[0].Ledger != first[0].Ledger || out[1].Ledger != first[2].Ledger || out[3].Ledger != first[3].Ledger {
		t.Error("a remaining endpoint's ledger entry changed")
	}
}
