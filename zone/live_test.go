package zone

import (
	"slices"
	"testing"

	"github.com/hdns-dev/hdns/internal/fixture"
)

// loadZone has a Service of each kind of load query over Pod p-0: the
// server-wide one (ll), its own (own, padded with spaces) and none (ord).
func loadZone(t testing.TB) ([]*Service, []*EndpointSlice) {
	p0 := []fixture.Endpoint{{Address: "10.0.0.1", Pod: "p-0"}}
	return shrunk(t,
		fixture.Service{Namespace: "lo", Name: "ll", Headless: true, Annotations: policyAnnotation("least-loaded")}.API(),
		fixture.Service{Namespace: "lo", Name: "own", Headless: true,
			Annotations: map[string]string{AnnotationPolicy: "least-loaded", AnnotationLoadQuery: " own_query "}}.API(),
		fixture.Service{Namespace: "lo", Name: "ord", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "lo", Name: "ll-1", Service: "ll", Endpoints: append(p0, fixture.Endpoint{Address: "10.0.0.2"})}.API(),
		fixture.EndpointSlice{Namespace: "lo", Name: "own-1", Service: "own", Endpoints: p0}.API(),
		fixture.EndpointSlice{Namespace: "lo", Name: "ord-1", Service: "ord", Endpoints: p0}.API(),
	)
}

func TestLiveLoadCells(t *testing.T) {
	svcs, sl := loadZone(t)
	cands := func(snap *Snapshot, svc string) []bool {
		_, n := snap.Lookup(svc + ".lo.svc.cluster.local.")
		var live []bool
		for _, ep := range n.ChosenA.Set.Candidates {
			live = append(live, ep.Live != nil)
		}
		return live
	}
	// Without a load source no endpoint has a live cell.
	opts := testOptions(t)
	snap := Build(opts, 1, svcs, sl)
	if got := cands(snap, "ll"); !slices.Equal(got, []bool{false, false}) {
		t.Errorf("no load query: live cells %v", got)
	}
	opts.Policies.SetDefaultLoadQuery("default_query")
	snap = Build(opts, 2, svcs, sl)
	// Pod endpoints of Services whose chain reads load get one; the
	// address-only endpoint and the ordered Service's do not.
	if got := cands(snap, "ll"); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("least-loaded: live cells %v, want the Pod's only", got)
	}
	if got := cands(snap, "ord"); !slices.Equal(got, []bool{false}) {
		t.Errorf("ordered: live cells %v, want none", got)
	}
	// The annotation picks the query; the same Pod under two queries has
	// two cells, and a rebuild keeps them.
	if got := opts.Policies.LiveQueries(); !slices.Equal(got, []string{"default_query", "own_query"}) {
		t.Errorf("LiveQueries = %v", got)
	}
	_, n := snap.Lookup("ll.lo.svc.cluster.local.")
	cell := n.ChosenA.Set.Candidates[0].Live
	if cell != opts.Policies.Live("default_query", "lo/p-0") {
		t.Error("the endpoint's cell is not the Compiler's for its query and namespace/pod")
	}
	snap = Build(opts, 3, svcs, sl)
	if _, n := snap.Lookup("ll.lo.svc.cluster.local."); n.ChosenA.Set.Candidates[0].Live != cell {
		t.Error("a rebuild replaced the live cell")
	}
}
