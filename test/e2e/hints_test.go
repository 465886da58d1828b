//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// Clients of TestHints, asking by ECS: one at each Node's address, and
// one nowhere known.
const (
	hintsClientA, hintsClientB, hintsClientC = "192.0.2.21", "192.0.2.22", "192.0.2.23"
	hintsUnknown                             = "198.51.100.1"
)

// hintsEndpoint is one endpoint of TestHints's hand-written slice: its
// address on node-X in zone-X, and its hints.
type hintsEndpoint struct {
	addr, node         string
	forZones, forNodes []string
}

// TestHints honours EndpointSlice hints on the real control plane: three
// Nodes in three zones, a headless Service without selector whose slice
// the test writes (as a controller of its own would), with neither
// trafficDistribution nor a policy annotation. /debug/explain answers each
// client the endpoints hinted for its zone, not those in it; a change of
// hints alone reaches the answers; incomplete hints are ignored (every
// endpoint), until trafficDistribution asks for the zone anyway; node
// hints put a node's own first; and a real query with ECS is answered as
// explained. Then the EndpointSlice controller's own hints, for a Service
// with pods and trafficDistribution PreferSameZone.
func TestHints(t *testing.T) {
	cp := harness.Start(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "hints"
	if _, err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	createZonedNodes(ctx, t, cp)
	createService(ctx, t, cp, ns, fixture.Service{Name: "lent", Headless: true}.API())
	eps := []hintsEndpoint{
		{addr: "10.244.1.10", node: "a", forZones: []string{"zone-a"}},
		{addr: "10.244.2.10", node: "b", forZones: []string{"zone-b"}},
		// zone-b lends one endpoint to zone-a, as the controller does for
		// a zone with less than its share of endpoints.
		{addr: "10.244.2.11", node: "b", forZones: []string{"zone-a"}},
		{addr: "10.244.3.10", node: "c", forZones: []string{"zone-c"}},
	}
	slice, err := cp.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, hintedSlice(ns, eps), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := startHDNS(t, "--kubeconfig", cp.KubeconfigPath)
	name := "lent." + ns + ".svc.cluster.local"
	all := []string{"10.244.1.10", "10.244.2.10", "10.244.2.11", "10.244.3.10"}
	// Explanations only, until the real query at the end: they leave the
	// ledgers alone, so that no answer spills over by load.
	h.awaitExplainAnswer(t, name, hintsUnknown, all...)
	expectAnswers(t, h, name, "zone hints", map[string][]string{
		hintsClientA: {"10.244.1.10", "10.244.2.11"}, hintsClientB: {"10.244.2.10"},
		hintsClientC: {"10.244.3.10"}, hintsUnknown: all,
	})
	if e, err := h.explain(name, "A", hintsClientA); err != nil || !strings.HasPrefix(e.Policy, "prefer-zone=by:hints, ") {
		t.Errorf("policy %q (%v), want the hints' step first", e.Policy, err)
	}

	t.Run("HintsChange", func(t *testing.T) {
		eps[2].forZones = []string{"zone-b"}
		slice = updateHints(ctx, t, cp, slice, eps)
		h.awaitExplainAnswer(t, name, hintsClientA, "10.244.1.10")
		expectAnswers(t, h, name, "changed hints", map[string][]string{hintsClientB: {"10.244.2.10", "10.244.2.11"}})
	})
	t.Run("IncompleteHints", func(t *testing.T) {
		eps[3].forZones = nil
		slice = updateHints(ctx, t, cp, slice, eps)
		h.awaitExplainAnswer(t, name, hintsClientA, all...)
		expectAnswers(t, h, name, "incomplete hints", map[string][]string{hintsClientB: all, hintsClientC: all})
		// trafficDistribution asks for the zone whatever the hints: the
		// endpoints' own zones then serve.
		setTrafficDistribution(ctx, t, cp, ns, "lent", corev1.ServiceTrafficDistributionPreferSameZone)
		h.awaitExplainAnswer(t, name, hintsClientC, "10.244.3.10")
		expectAnswers(t, h, name, "incomplete hints, PreferSameZone", map[string][]string{
			hintsClientA: {"10.244.1.10"}, hintsClientB: {"10.244.2.10", "10.244.2.11"}})
	})
	t.Run("NodeHints", func(t *testing.T) {
		setTrafficDistribution(ctx, t, cp, ns, "lent", "")
		for i, n := range []string{"node-a", "node-b", "node-a", "node-c"} {
			eps[i].forNodes = []string{n}
			eps[i].forZones = []string{"zone-" + eps[i].node}
		}
		slice = updateHints(ctx, t, cp, slice, eps)
		h.awaitExplainAnswer(t, name, hintsClientB, "10.244.2.10")
		expectAnswers(t, h, name, "node hints", map[string][]string{
			hintsClientA: {"10.244.1.10", "10.244.2.11"}, hintsClientC: {"10.244.3.10"}, hintsUnknown: all})
		if e, err := h.explain(name, "A", hintsClientA); err != nil || !strings.HasPrefix(e.Policy, "prefer-node=by:hints, ") {
			t.Errorf("policy %q (%v), want the node hints' step first", e.Policy, err)
		}
		// The first real question of the Service, with ECS, gets the
		// answer explained (no handout has loaded any endpoint yet).
		m, err := h.exchangeECS(name, dns.TypeA, netip.MustParseAddr(hintsClientA))
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(slices.Values(addrsOf(m))); !slices.Equal(got, []string{"10.244.1.10", "10.244.2.11"}) {
			t.Errorf("real query from %s: %v, want node-a's hinted endpoints", hintsClientA, got)
		}
	})
	t.Run("ControllerHints", func(t *testing.T) { controllerHints(ctx, t, cp, h, ns) })
}

// controllerHints: a headless Service with pods on the three Nodes and
// trafficDistribution PreferSameZone, whose slices the EndpointSlice
// controller hints; each client is answered its zone's pod.
func controllerHints(ctx context.Context, t *testing.T, cp *harness.ControlPlane, h *hdnsProcess, ns string) {
	svc := headless("close", corev1.ServicePort{Name: "http", Port: 80})
	svc.Spec.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
	createService(ctx, t, cp, ns, svc)
	var pods []harness.PodOptions
	for i, z := range []string{"a", "b", "c"} {
		pods = append(pods, harness.PodOptions{Name: "close-" + z, Labels: map[string]string{"app": "close"},
			IPv4: fmt.Sprintf("10.244.%d.20", i+1), Node: "node-" + z, HostIP: fmt.Sprintf("192.0.2.%d", 21+i)})
	}
	if err := createPods(ctx, cp, ns, pods, 3); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got, err := cp.WaitForEndpointSlices(wctx, ns, "close", func(ss []discoveryv1.EndpointSlice) bool {
		n := 0
		for _, s := range ss {
			for _, e := range s.Endpoints {
				if e.Hints == nil || len(e.Hints.ForZones) == 0 {
					return false
				}
				n++
			}
		}
		return n == len(pods)
	})
	if err != nil {
		t.Fatalf("the controller's hints: %v\n%s", err, harness.DescribeSlices(got))
	}
	name := "close." + ns + ".svc.cluster.local"
	h.awaitExplainAnswer(t, name, hintsClientC, "10.244.3.20")
	expectAnswers(t, h, name, "the controller's hints", map[string][]string{
		hintsClientA: {"10.244.1.20"}, hintsClientB: {"10.244.2.20"},
		hintsUnknown: {"10.244.1.20", "10.244.2.20", "10.244.3.20"}})
}

// createZonedNodes creates node-a, node-b and node-c in zone-a, zone-b and
// zone-c, at 192.0.2.21-23 with podCIDRs 10.244.1-3.0/24.
func createZonedNodes(ctx context.Context, t *testing.T, cp *harness.ControlPlane) {
	t.Helper()
	for i, z := range []string{"a", "b", "c"} {
		n := fixture.Node{Name: "node-" + z, InternalIP: fmt.Sprintf("192.0.2.%d", 21+i),
			Labels:   map[string]string{corev1.LabelHostname: "node-" + z, corev1.LabelTopologyZone: "zone-" + z},
			PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i+1)}}
		if err := cp.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
}

// hintedSlice is lent's slice, written by the test: each endpoint ready,
// on node-X in zone-X, with its hints.
func hintedSlice(ns string, eps []hintsEndpoint) *discoveryv1.EndpointSlice {
	s := fixture.EndpointSlice{Namespace: ns, Name: "lent-1", Service: "lent",
		Labels: map[string]string{discoveryv1.LabelManagedBy: "e2e.hdns.dev"}}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, fixture.Endpoint{Address: e.addr, NodeName: "node-" + e.node, Zone: "zone-" + e.node,
			Ready: new(true), ForZones: e.forZones, ForNodes: e.forNodes})
	}
	return s.API()
}

// updateHints writes eps's hints into slice and returns it as stored.
func updateHints(ctx context.Context, t *testing.T, cp *harness.ControlPlane, slice *discoveryv1.EndpointSlice, eps []hintsEndpoint) *discoveryv1.EndpointSlice {
	t.Helper()
	next := hintedSlice(slice.Namespace, eps)
	next.ResourceVersion = slice.ResourceVersion
	out, err := cp.Client.DiscoveryV1().EndpointSlices(slice.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setTrafficDistribution sets the Service's spec.trafficDistribution,
// clearing it for "".
func setTrafficDistribution(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns, name, td string) {
	t.Helper()
	svc, err := cp.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.TrafficDistribution = nil
	if td != "" {
		svc.Spec.TrafficDistribution = new(td)
	}
	if _, err := cp.Client.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// expectAnswers checks what /debug/explain answers each client, as a
// sorted set of addresses.
func expectAnswers(t *testing.T, h *hdnsProcess, name, what string, want map[string][]string) {
	t.Helper()
	for client, w := range want {
		if got := h.explainAnswer(t, name, client); !slices.Equal(got, w) {
			t.Errorf("%s, client %s: answer %v, want %v", what, client, got, w)
		}
	}
}
