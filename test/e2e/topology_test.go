//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// TestTopologyExplain locates clients on the real control plane: three
// Nodes in three zones with podCIDRs and addresses (written as a kubelet
// writes them), pods of a headless Service on them (one with an address
// outside its node's range), and /debug/explain naming each client's node,
// zone and region and how it was found, for a client at a node address,
// in a podCIDR, at an endpoint's address, and nowhere known; then a Node
// deleted while its pod serves.
func TestTopologyExplain(t *testing.T) {
	cp := harness.Start(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ns = "topo"
	if _, err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for i, z := range []string{"a", "b", "c"} {
		err := cp.CreateNode(ctx, fixture.Node{
			Name: "node-" + z,
			Labels: map[string]string{corev1.LabelHostname: "node-" + z,
				corev1.LabelTopologyZone: "zone-" + z, corev1.LabelTopologyRegion: "region-1"},
			InternalIP: fmt.Sprintf("192.0.2.%d", 21+i),
			PodCIDRs:   []string{fmt.Sprintf("10.244.%d.0/24", i+1)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	createService(ctx, t, cp, ns, headless("web", corev1.ServicePort{Name: "http", Port: 80}))
	pods := []harness.PodOptions{
		{Name: "web-a", IPv4: "10.244.1.10", Node: "node-a", HostIP: "192.0.2.21"},
		{Name: "web-b", IPv4: "10.244.2.10", Node: "node-b", HostIP: "192.0.2.22"},
		// The CNI gave this pod an address outside node-c's range: only
		// its endpoint places it.
		{Name: "web-c", IPv4: "10.250.0.3", Node: "node-c", HostIP: "192.0.2.23"},
	}
	for i := range pods {
		pods[i].Labels = map[string]string{"app": "web"}
	}
	if err := createPods(ctx, cp, ns, pods, 3); err != nil {
		t.Fatal(err)
	}
	h := startHDNS(t, "--kubeconfig", cp.KubeconfigPath)
	h.await(t, q("web."+ns+".svc.cluster.local", dns.TypeA), answers(
		rrs("web."+ns+".svc.cluster.local.", "A", "10.244.1.10", "10.244.2.10", "10.250.0.3")...))

	for _, tc := range []struct {
		name, client string
		want         answer.ExplainLocation
	}{
		{name: "node address", client: "192.0.2.22",
			want: answer.ExplainLocation{Node: "node-b", Zone: "zone-b", Region: "region-1", By: "node-address"}},
		{name: "pod CIDR", client: "10.244.3.77",
			want: answer.ExplainLocation{Node: "node-c", Zone: "zone-c", Region: "region-1", By: "pod-cidr"}},
		{name: "endpoint inside its node's range", client: "10.244.1.10",
			want: answer.ExplainLocation{Node: "node-a", Zone: "zone-a", Region: "region-1", By: "endpoint"}},
		{name: "endpoint outside any range", client: "10.250.0.3",
			want: answer.ExplainLocation{Node: "node-c", Zone: "zone-c", Region: "region-1", By: "endpoint"}},
		{name: "IPv4-mapped", client: "::ffff:192.0.2.21",
			want: answer.ExplainLocation{Node: "node-a", Zone: "zone-a", Region: "region-1", By: "node-address"}},
		{name: "unknown", client: "198.51.100.1", want: answer.ExplainLocation{By: "unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := h.explainLocation(t, "web."+ns+".svc.cluster.local", tc.client)
			if got != tc.want {
				t.Errorf("client %s located at %+v, want %+v", tc.client, got, tc.want)
			}
		})
	}

	t.Run("PreferZone", func(t *testing.T) { preferZone(ctx, t, cp, h, ns) })

	// node-c goes while web-c still serves (this control plane runs no
	// pod garbage collector): its address and range are unknown, and its
	// pod is still placed by its endpoint, in the zone the slice gives.
	t.Run("NodeDeleted", func(t *testing.T) {
		if err := cp.Client.CoreV1().Nodes().Delete(ctx, "node-c", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		name := "web." + ns + ".svc.cluster.local"
		deadline := time.Now().Add(answerTimeout)
		for h.explainLocation(t, name, "192.0.2.23").By != "unknown" {
			if time.Now().After(deadline) {
				t.Fatal("node-c's address still located after its deletion")
			}
			time.Sleep(answerPoll)
		}
		for client, want := range map[string]answer.ExplainLocation{
			"10.244.3.77": {By: "unknown"},
			"10.250.0.3":  {Node: "node-c", Zone: "zone-c", By: "endpoint"},
		} {
			if got := h.explainLocation(t, name, client); got != want {
				t.Errorf("client %s located at %+v, want %+v", client, got, want)
			}
		}
	})
}

// preferZone gives web spec.trafficDistribution PreferSameZone and asks
// as a client on each node. The queries so far, under the ordered policy,
// gave the pods first, second and third places: the clients of the second
// and third are answered their own zone's pod, and an unknown client all
// three. Whether the first pod's zone spills over depends on how much of
// the earlier subtests' handouts its ledger still holds, so it is left to
// the unit tests of spill-over by load (policy/locality_test.go). Then the
// annotation "prefer-zone=min:2", which no zone meets, spills every answer
// over.
func preferZone(ctx context.Context, t *testing.T, cp *harness.ControlPlane, h *hdnsProcess, ns string) {
	name := "web." + ns + ".svc.cluster.local"
	before, err := h.explain(name, "A", "198.51.100.1")
	if err != nil || len(before.Answer) != 3 {
		t.Fatalf("explain: %v %v", before.Answer, err)
	}
	var order []string
	for _, rr := range before.Answer {
		order = append(order, rr[strings.LastIndexByte(rr, ' ')+1:])
	}
	clientOf := map[string]string{"10.244.1.10": "192.0.2.21", "10.244.2.10": "192.0.2.22", "10.250.0.3": "192.0.2.23"}
	svc, err := cp.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
	if svc, err = cp.Client.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	all := slices.Sorted(slices.Values(order))
	h.awaitExplainAnswer(t, name, clientOf[order[2]], order[2])
	for client, want := range map[string][]string{clientOf[order[1]]: {order[1]}, "198.51.100.1": all} {
		if got := h.explainAnswer(t, name, client); !slices.Equal(got, want) {
			t.Errorf("PreferSameZone, client %s: answer %v, want %v (ordered answered %v)", client, got, want, order)
		}
	}
	svc.Annotations = map[string]string{"hdns.dev/policy": "prefer-zone=min:2"}
	if _, err = cp.Client.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.awaitExplainAnswer(t, name, clientOf[order[2]], all...)
}

// awaitExplainAnswer waits until /debug/explain answers client with want.
func (h *hdnsProcess) awaitExplainAnswer(t *testing.T, name, client string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(answerTimeout)
	for got := h.explainAnswer(t, name, client); !slices.Equal(got, want); got = h.explainAnswer(t, name, client) {
		if time.Now().After(deadline) {
			_, body, _ := h.debugGet("/debug/explain?name=" + url.QueryEscape(name) + "&client=" + url.QueryEscape(client))
			t.Fatalf("client %s: answer %v, want %v; explanation %s", client, got, want, body)
		}
		time.Sleep(answerPoll)
	}
}

// explainAnswer returns the addresses /debug/explain answers client,
// sorted.
func (h *hdnsProcess) explainAnswer(t *testing.T, name, client string) []string {
	t.Helper()
	e, err := h.explain(name, "A", client)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range e.Answer {
		out = append(out, rr[strings.LastIndexByte(rr, ' ')+1:])
	}
	slices.Sort(out)
	return out
}

// explainLocation returns where /debug/explain places client.
func (h *hdnsProcess) explainLocation(t *testing.T, name, client string) answer.ExplainLocation {
	t.Helper()
	code, body, err := h.debugGet("/debug/explain?name=" + url.QueryEscape(name) + "&client=" + url.QueryEscape(client))
	if err != nil || code != http.StatusOK {
		t.Fatalf("explain for %s: %d %v: %s", client, code, err, body)
	}
	var e answer.Explanation
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	if e.ClientLocation == nil {
		t.Fatalf("explain for %s has no client location: %s", client, body)
	}
	return *e.ClientLocation
}
