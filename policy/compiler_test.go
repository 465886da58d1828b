package policy

import "testing"

// bindService compiles and binds one Service's endpoints, as a zone build
// does, and returns their ledger entries by key.
func bindService(comp *Compiler, service string, keys ...string) map[string]*Ledger {
	sc := comp.CompileService(ServicePolicy{Service: service, Annotation: "least-loaded"})
	ids := make([]EndpointID, len(keys))
	for i, k := range keys {
		ids[i] = EndpointID{Key: k, PodName: k, Hostname: k, Ready: true}
	}
	out := make([]Endpoint, len(ids))
	sc.Bind(ids, out)
	got := make(map[string]*Ledger, len(keys))
	for i, k := range keys {
		got[k] = out[i].Ledger
	}
	return got
}

// TestSweepServicesKeepsUntouchedState: after a build of some Services
// only, the others keep their ledger entries and chains without being
// asked again; a rebuilt Service keeps the entries of the endpoints it
// still has and releases the others, unless another Service holds them;
// a Service rebuilt to nothing (deleted) releases all it held.
func TestSweepServicesKeepsUntouchedState(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	a := bindService(comp, "n/a", "p1", "p2", "shared")
	bindService(comp, "n/b", "p3", "shared")
	chainB := comp.CompileService(ServicePolicy{Service: "n/b", Annotation: "least-loaded"}).Chain
	comp.Sweep()

	a2 := bindService(comp, "n/a", "p1", "p4")
	comp.SweepServices([]string{"n/a"})
	if a2["p1"] != a["p1"] {
		t.Error("the rebuilt Service lost the entry of an endpoint it kept")
	}
	if held(comp, "p2") {
		t.Error("the rebuilt Service kept the entry of an endpoint it lost")
	}
	if !held(comp, "p3") || !held(comp, "shared") {
		t.Error("the untouched Service lost its entries")
	}
	if comp.CompileService(ServicePolicy{Service: "n/b", Annotation: "least-loaded"}).Chain != chainB {
		t.Error("the untouched Service lost its chain")
	}
	comp.SweepServices([]string{"n/b"}) // compiled above: kept
	comp.SweepServices([]string{"n/b"}) // rebuilt without asking: deleted
	if held(comp, "p3") || held(comp, "shared") {
		t.Error("a deleted Service kept its entries")
	}
	if !held(comp, "p1") || !held(comp, "p4") {
		t.Error("deleting one Service released another's entries")
	}
}

// held reports whether the Compiler still holds key's ledger entry,
// without asking for it (which would keep it one more sweep).
func held(c *Compiler, key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ledgers[c.keyHash(key)] != nil
}
