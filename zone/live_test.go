package zone

import (
	"slices"
	"testing"
)

const loadZone = `
apiVersion: v1
kind: Service
metadata: {name: ll, namespace: lo, annotations: {hdns.dev/policy: least-loaded}}
spec: {clusterIP: None}
---
apiVersion: v1
kind: Service
metadata: {name: own, namespace: lo, annotations: {hdns.dev/policy: least-loaded, hdns.dev/load-query: " own_query "}}
spec: {clusterIP: None}
---
apiVersion: v1
kind: Service
metadata: {name: ord, namespace: lo}
spec: {clusterIP: None}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ll-1, namespace: lo, labels: {kubernetes.io/service-name: ll}}
addressType: IPv4
endpoints:
- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: p-0}}
- {addresses: [10.0.0.2]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: own-1, namespace: lo, labels: {kubernetes.io/service-name: own}}
addressType: IPv4
endpoints:
- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: p-0}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ord-1, namespace: lo, labels: {kubernetes.io/service-name: ord}}
addressType: IPv4
endpoints:
- {addresses: [10.0.0.1], targetRef: {kind: Pod, name: p-0}}
`

func TestLiveLoadCells(t *testing.T) {
	svcs, sl := mustParse(t, loadZone)
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
