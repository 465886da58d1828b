//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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

// TestTopologyPaths proves zone-aware answers along the paths real clients
// take to hdns, on the real control plane with the real hdns and CoreDNS
// binaries: three Nodes in three zones, two pods of a headless Service
// (web) on each, and clients asking from pod and node addresses directly,
// through a CoreDNS that puts the client into ECS (rewrite edns0 subnet),
// through one that does not, and through a NodeLocal-DNSCache-style cache
// on each node; Services with each spec.trafficDistribution value, asked
// through the CoreDNS with rewrite and the node caches; the ECS scope of
// the replies, directly and through the CoreDNS with rewrite; the
// answer-locality metric over a known set of questions; then bad input (a
// Node without zone labels, overlapping podCIDRs, an address two Nodes
// list, ECS from an unknown range, a Node deleted while its pods serve),
// each answered NOERROR with the addresses the locator's rules give,
// through the Node informer and the whole answer path. One control plane,
// one hdns and one CoreDNS serve every subtest, in order.
//
// The pod network on this machine is loopback: node-z's podCIDR is
// 127.30.z.0/24 and its address 127.30.0.z (z = 1, 2, 3 for zones a, b,
// c), so a client pod on it is a source address in its range, and its
// NodeLocal cache listens on and forwards from the node's address;
// node-a2, a second Node in zone-a, has 127.30.11.0/24 and 127.30.0.11.
// The Services' pods get 10.244.z.x (EndpointSlices refuse loopback
// addresses): their endpoints place them by nodeName, outside their node's
// range, as some CNIs allocate.
func TestTopologyPaths(t *testing.T) {
	bin := corednsBinary(t)
	cp := harness.Start(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := &pathsEnv{ctx: ctx, cp: cp, name: "web." + pathsNS + ".svc.cluster.local."}
	e.createCluster(t)
	// A 1 s TTL bounds how long a cache holds an answer the test changes.
	e.h = startHDNS(t, "--kubeconfig", cp.KubeconfigPath, "--ttl", "1s")
	// An unknown client (127.0.0.1) gets every pod of web and of manual.
	// These answers also give every pod handouts, so that no zone's load
	// is compared with zones that have none (see pathsPolicy).
	e.h.await(t, q(e.name, dns.TypeA), answers(rrs(e.name, "A", e.all...)...))
	e.h.await(t, q(e.manualName(), dns.TypeA), answers(rrs(e.manualName(), "A", e.manualPods()...)...))
	e.startCoreDNS(t, bin)

	t.Run("Direct", e.direct)
	t.Run("CoreDNSRewrite", e.coreDNSRewrite)
	t.Run("CoreDNSWithoutRewrite", e.coreDNSWithoutRewrite)
	t.Run("NodeLocalCache", e.nodeLocalCache)
	t.Run("TrafficDistribution", e.trafficDistribution)
	t.Run("ECSScope", e.ecsScope)
	t.Run("LocalityMetric", e.localityMetric)
	t.Run("BadInput", func(t *testing.T) {
		t.Run("UnlabelledNode", e.unlabelledNode)
		t.Run("OverlappingPodCIDRs", e.overlappingPodCIDRs)
		t.Run("ClientOnTwoNodes", e.clientOnTwoNodes)
		t.Run("UnknownECS", e.unknownECS)
		t.Run("NodeDeleted", e.nodeDeleted)
	})
}

const (
	pathsNS = "paths"
	// pathsPolicy keeps every answer in the client's zone: the threshold
	// of spill-over by load is set so high that the few queries here,
	// many from one zone, never reach it (spill-over is proven by
	// policy/locality_test.go and TestTopologyExplain). A zone's load is
	// compared with the others' mean, which must not be 0: the first
	// answers give every pod handouts.
	pathsPolicy = "prefer-zone=over:1000"
	// twinCIDR is node-a2's podCIDR: its third byte numbers its pods'
	// addresses, as for the other nodes.
	twinCIDR = "127.30.11.0/24"
	// ecsRewrite is the directive of deploy/examples/Corefile.stub-domain
	// that puts the asking pod's address into ECS.
	ecsRewrite = "rewrite edns0 subnet set 32 128"
)

// Where the two CoreDNS blocks listen and forward from: pods on node-c,
// in its podCIDR.
var (
	rewriteDNS = netip.MustParseAddr("127.30.3.53") // with ecsRewrite
	plainDNS   = netip.MustParseAddr("127.30.3.54") // without it
)

// pathsDistributions are the spec.trafficDistribution values the test
// proves, each on a Service of its own (named svc, without annotation, so
// with the default spill-over) with one pod on each node: pods of
// different Services share no ledger entry, so that one Service's answers
// cannot spill another's over.
var pathsDistributions = []struct{ svc, value string }{
	{svc: "same-zone", value: corev1.ServiceTrafficDistributionPreferSameZone},
	{svc: "close", value: corev1.ServiceTrafficDistributionPreferClose},
	{svc: "same-node", value: corev1.ServiceTrafficDistributionPreferSameNode},
}

// pathsNode is one Node of the test's cluster, its zone and web's pods on
// it: one in each zone (pathsEnv.zones), and node-a2 with none.
type pathsNode struct {
	zone, node string
	addr       netip.Addr   // the Node's InternalIP, where its cache listens
	podCIDR    netip.Prefix // spec.podCIDRs
	pods       []string     // web's pods' addresses, sorted
}

// distributionPod is the address of the pod of pathsDistributions[d] on
// z's node: 10.244.n.(20+d), n the third byte of its podCIDR.
func (z pathsNode) distributionPod(d int) string {
	return fmt.Sprintf("10.244.%d.%d", z.podCIDR.Addr().As4()[2], 20+d)
}

// client is the address of the k-th client pod on the node.
func (z pathsNode) client(k int) netip.Addr {
	a := z.podCIDR.Addr().As4()
	a[3] = byte(100 + k)
	return netip.AddrFrom4(a)
}

type pathsEnv struct {
	ctx   context.Context
	cp    *harness.ControlPlane
	h     *hdnsProcess
	name  string // web's name
	zones []pathsNode
	twin  pathsNode // node-a2, in zone-a, where web has no pod
	all   []string  // every pod's address, sorted: an unknown client's answer
}

// nodes lists every node of the cluster as created: node-a, -b, -c and
// node-a2.
func (e *pathsEnv) nodes() []pathsNode { return append(slices.Clone(e.zones), e.twin) }

// createCluster creates the Nodes, web and its pods, the Services of
// pathsDistributions and theirs, and manual with its EndpointSlice.
func (e *pathsEnv) createCluster(t *testing.T) {
	t.Helper()
	if _, err := e.cp.CreateNamespace(e.ctx, pathsNS); err != nil {
		t.Fatal(err)
	}
	svc := headless("web", corev1.ServicePort{Name: "http", Port: 80})
	svc.Annotations = map[string]string{policyAnnotation: pathsPolicy}
	createService(e.ctx, t, e.cp, pathsNS, svc)
	blind := headless(blindService, corev1.ServicePort{Name: "http", Port: 80})
	blind.Spec.Selector = svc.Spec.Selector
	createService(e.ctx, t, e.cp, pathsNS, blind)
	var pods []harness.PodOptions
	for i, z := range []string{"a", "b", "c"} {
		pz := pathsNode{zone: "zone-" + z, node: "node-" + z,
			addr:    netip.AddrFrom4([4]byte{127, 30, 0, byte(i + 1)}),
			podCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 30, byte(i + 1), 0}), 24)}
		e.createNode(t, pz.node, pz.zone, pz.addr.String(), pz.podCIDR.String())
		for k := range 2 {
			ip := fmt.Sprintf("10.244.%d.%d", i+1, 10+k)
			pz.pods = append(pz.pods, ip)
			pods = append(pods, harness.PodOptions{Name: fmt.Sprintf("web-%s-%d", z, k), Labels: svc.Spec.Selector,
				IPv4: ip, Node: pz.node, HostIP: pz.addr.String()})
		}
		e.zones = append(e.zones, pz)
		e.all = append(e.all, pz.pods...)
	}
	slices.Sort(e.all)
	a := e.zones[0]
	e.twin = pathsNode{zone: a.zone, node: a.node + "2", addr: netip.AddrFrom4([4]byte{127, 30, 0, 11}),
		podCIDR: netip.MustParsePrefix(twinCIDR)}
	e.createNode(t, e.twin.node, e.twin.zone, e.twin.addr.String(), e.twin.podCIDR.String())
	for d, dist := range pathsDistributions {
		svc := headless(dist.svc, corev1.ServicePort{Name: "http", Port: 80})
		svc.Spec.TrafficDistribution = new(dist.value)
		createService(e.ctx, t, e.cp, pathsNS, svc)
		for _, n := range e.nodes() {
			pods = append(pods, harness.PodOptions{Name: dist.svc + "-" + n.node, Labels: svc.Spec.Selector,
				IPv4: n.distributionPod(d), Node: n.node, HostIP: n.addr.String()})
		}
	}
	if err := createPods(e.ctx, e.cp, pathsNS, pods, 3); err != nil {
		t.Fatal(err)
	}
	e.createManual(t)
}

// manual is a selector-less Service whose one EndpointSlice its owner
// writes (manualSlice), as a mesh or a custom controller does: an endpoint
// on each of node-a, -b and -c, at 10.244.z.30, with its nodeName and
// zone. No controller rewrites it when a Node goes, so it keeps its
// endpoints on a deleted Node for as long as the test needs.
const manualService = "manual"

func (e *pathsEnv) manualName() string { return manualService + "." + pathsNS + ".svc.cluster.local." }

// manualPod is the address of manual's endpoint on z's node.
func (z pathsNode) manualPod() string {
	return fmt.Sprintf("10.244.%d.30", z.podCIDR.Addr().As4()[2])
}

// manualPods lists manual's endpoints' addresses, sorted.
func (e *pathsEnv) manualPods() []string {
	var out []string
	for _, z := range e.zones {
		out = append(out, z.manualPod())
	}
	slices.Sort(out)
	return out
}

// createManual creates manual, with pathsPolicy, and its EndpointSlice.
func (e *pathsEnv) createManual(t *testing.T) {
	t.Helper()
	ports := []fixture.Port{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	createService(e.ctx, t, e.cp, pathsNS, fixture.Service{Namespace: pathsNS, Name: manualService, Headless: true,
		Annotations: map[string]string{policyAnnotation: pathsPolicy}, Ports: ports}.API())
	slice := fixture.EndpointSlice{Namespace: pathsNS, Name: manualService + "-owned", Service: manualService,
		Labels: manualSlice, Ports: ports}
	for _, z := range e.zones {
		slice.Endpoints = append(slice.Endpoints, fixture.Endpoint{Address: z.manualPod(), NodeName: z.node, Zone: z.zone})
	}
	if _, err := e.cp.Client.DiscoveryV1().EndpointSlices(pathsNS).Create(e.ctx, slice.API(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create EndpointSlice: %v", err)
	}
}

// createNode creates a Node with a hostname label, zone's zone and region
// labels unless zone is empty, and address and podCIDR unless empty.
func (e *pathsEnv) createNode(t *testing.T, name, zone, addr, podCIDR string) {
	t.Helper()
	n := fixture.Node{Name: name, Labels: map[string]string{corev1.LabelHostname: name}, InternalIP: addr}
	if zone != "" {
		n.Labels[corev1.LabelTopologyZone], n.Labels[corev1.LabelTopologyRegion] = zone, "region-1"
	}
	if podCIDR != "" {
		n.PodCIDRs = []string{podCIDR}
	}
	if err := e.cp.CreateNode(e.ctx, n); err != nil {
		t.Fatal(err)
	}
}

// deleteNode deletes the Node name.
func (e *pathsEnv) deleteNode(t *testing.T, name string) {
	t.Helper()
	if err := e.cp.Client.CoreV1().Nodes().Delete(e.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startCoreDNS runs one CoreDNS with three kinds of block for cluster.local,
// each on its own address and forwarding to hdns from it (forward's
// source_address, as each pod or node has its own): at rewriteDNS with
// ecsRewrite, at plainDNS without it, and on each node's address a
// NodeLocal-style cache (cache, no rewrite), as NodeLocal DNSCache
// forwards from the node (node-a2's included).
func (e *pathsEnv) startCoreDNS(t *testing.T, bin string) {
	t.Helper()
	example, err := os.ReadFile(filepath.Join(deployDir, "examples", "Corefile.stub-domain"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), "\n    "+ecsRewrite+"\n") {
		t.Fatalf("Corefile.stub-domain no longer has %q, which this test proves:\n%s", ecsRewrite, example)
	}
	block := func(bind netip.Addr, plugins string) string {
		return fmt.Sprintf("cluster.local:53 {\n    bind %s\n%s    forward . %s {\n        source_address %s\n    }\n}\n",
			bind, plugins, e.h.DNS, bind)
	}
	corefile := block(rewriteDNS, "    "+ecsRewrite+"\n") + block(plainDNS, "")
	listens := []netip.Addr{rewriteDNS, plainDNS}
	for _, z := range e.nodes() {
		corefile += block(z.addr, "    cache 30 {\n        success 9984 30 1\n    }\n")
		listens = append(listens, z.addr)
	}
	// Ready when every block answers the apex's SOA, which gives no pod
	// a handout.
	runCoreDNS(t, bin, t.TempDir(), corefile, "every CoreDNS block answering", func() (bool, string) {
		for _, a := range listens {
			m := new(dns.Msg)
			m.SetQuestion("cluster.local.", dns.TypeSOA)
			r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, net.JoinHostPort(a.String(), "53"))
			if err != nil || r.Rcode != dns.RcodeSuccess {
				return false, fmt.Sprintf("%s: %v %v", a, r, err)
			}
		}
		return true, ""
	})
}

// direct: hdns locates a client asking it directly by the query's source
// address: a pod in its node's podCIDR, a hostNetwork client at its
// node's address; and by the ECS address when the query carries one,
// whatever its source, the reply echoing the option (RFC 7871 7.2.1; its
// scope is ecsScope's). Each gets its zone's pods; an unknown source all.
func (e *pathsEnv) direct(t *testing.T) {
	for _, z := range e.zones {
		e.expect(t, "pod on "+z.node+", direct", e.h.DNS, z.client(0), netip.Prefix{}, z.pods)
		e.expect(t, "hostNetwork client on "+z.node+", direct", e.h.DNS, z.addr, netip.Prefix{}, z.pods)
		ecs := netip.PrefixFrom(z.client(1), 32)
		r := e.expect(t, "pod on "+z.node+" as ECS, direct", e.h.DNS, netip.Addr{}, ecs, z.pods)
		if ok, got := echoesECS(r, ecs); r != nil && !ok {
			t.Errorf("pod on %s as ECS, direct: reply's ECS option %s, want %v echoed", z.node, got, ecs)
		}
	}
	e.expect(t, "unknown client 127.0.0.1, direct", e.h.DNS, netip.Addr{}, netip.Prefix{}, e.all)
}

// coreDNSRewrite: through the CoreDNS with ecsRewrite, which runs on
// node-c, each client pod's address reaches hdns in ECS, and each gets its
// own zone's pods, asking with miekg/dns and with Go's resolver.
func (e *pathsEnv) coreDNSRewrite(t *testing.T) {
	server := net.JoinHostPort(rewriteDNS.String(), "53")
	for k := range 2 {
		for _, z := range e.zones {
			e.expect(t, fmt.Sprintf("pod %d on %s via CoreDNS with rewrite", k, z.node), server, z.client(k), netip.Prefix{}, z.pods)
		}
	}
	for _, z := range e.zones {
		got, err := goLookup(e.ctx, z.client(2), server, e.name)
		if err != nil || !slices.Equal(got, z.pods) {
			t.Errorf("Go resolver on %s (%v) via CoreDNS with rewrite: %v (error %v), want %s's pods %v", z.node, z.client(2), got, err, z.zone, z.pods)
		}
	}
}

// coreDNSWithoutRewrite: through the CoreDNS without ecsRewrite, every
// query reaches hdns from CoreDNS's own address, a pod on node-c, so that
// every client, whatever its zone, gets zone-c's pods.
func (e *pathsEnv) coreDNSWithoutRewrite(t *testing.T) {
	server := net.JoinHostPort(plainDNS.String(), "53")
	zoneC := e.zones[2]
	for _, z := range e.zones {
		e.expect(t, "pod on "+z.node+" via CoreDNS without rewrite (on node-c)", server, z.client(0), netip.Prefix{}, zoneC.pods)
	}
}

// nodeLocalCache: each node's cache forwards from the node's address, so
// hdns locates it at that node (by node-address) and answers its zone's
// pods; the cache then gives that answer to the node's pods.
func (e *pathsEnv) nodeLocalCache(t *testing.T) {
	for _, z := range e.zones {
		loc := e.h.explainLocation(t, e.name, z.addr.String())
		if want := (answer.ExplainLocation{Node: z.node, Zone: z.zone, Region: "region-1", By: "node-address"}); loc != want {
			t.Errorf("the cache's address %v is located at %+v, want %+v", z.addr, loc, want)
		}
		server := net.JoinHostPort(z.addr.String(), "53")
		for k := range 3 {
			e.expect(t, fmt.Sprintf("pod %d on %s via its node's cache", k, z.node), server, z.client(k), netip.Prefix{}, z.pods)
		}
	}
}

// trafficDistribution: each Service of pathsDistributions, asked through
// the CoreDNS with rewrite by a pod on each node, then through each node's
// cache, answers its zone's pods (PreferSameZone, PreferClose) or its
// node's pod (PreferSameNode): node-a and node-a2 get both zone-a pods,
// or each its own. No answer spills over: the nodes are asked in turn,
// each once a round, so that no zone's pods collect more than about one
// and a half times the others' handouts (spill-over by load is proven by
// policy/locality_test.go); waiting through /debug/explain counts none.
func (e *pathsEnv) trafficDistribution(t *testing.T) {
	rewrite := net.JoinHostPort(rewriteDNS.String(), "53")
	for d, dist := range pathsDistributions {
		t.Run(dist.value, func(t *testing.T) {
			name := distributionName(d)
			e.h.awaitExplainAnswer(t, name, "198.51.100.1", e.distributionPods(d)...)
			for _, n := range e.nodes() {
				e.expectFor(t, name, "pod on "+n.node+" via CoreDNS with rewrite", rewrite, n.client(0), netip.Prefix{}, e.distributionAnswer(d, n))
			}
			for _, n := range e.nodes() {
				e.expectFor(t, name, "pod on "+n.node+" via its node's cache", net.JoinHostPort(n.addr.String(), "53"),
					n.client(1), netip.Prefix{}, e.distributionAnswer(d, n))
			}
		})
	}
}

// distributionName is the name of the Service of pathsDistributions[d].
func distributionName(d int) string {
	return pathsDistributions[d].svc + "." + pathsNS + ".svc.cluster.local."
}

// distributionAnswer is what a client on n gets from the Service of
// pathsDistributions[d], sorted: the pods of n's zone, or n's own pod for
// PreferSameNode.
func (e *pathsEnv) distributionAnswer(d int, n pathsNode) []string {
	var out []string
	for _, m := range e.nodes() {
		if m.node == n.node || m.zone == n.zone && pathsDistributions[d].value != corev1.ServiceTrafficDistributionPreferSameNode {
			out = append(out, m.distributionPod(d))
		}
	}
	slices.Sort(out)
	return out
}

// unlabelledNode: a Node without zone or region labels, with a pod of the
// Service. Its clients are located on it with no zone, and get every pod;
// its pod's endpoint, with no zone either, is in no zone's answer.
func (e *pathsEnv) unlabelledNode(t *testing.T) {
	e.createNode(t, "node-n", "", "127.30.0.9", "127.30.9.0/24")
	err := createPods(e.ctx, e.cp, pathsNS, []harness.PodOptions{{Name: "web-n", Labels: map[string]string{"app": "web"},
		IPv4: "10.244.9.10", Node: "node-n", HostIP: "127.30.0.9"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	e.all = slices.Sorted(slices.Values(append(e.all, "10.244.9.10")))
	e.await(t, "unknown client, direct, once web-n serves", e.h.DNS, netip.Addr{}, netip.Prefix{}, e.all)
	e.awaitLocated(t, "127.30.9.100", answer.ExplainLocation{Node: "node-n", By: "pod-cidr"})
	e.expect(t, "pod on node-n via CoreDNS with rewrite", net.JoinHostPort(rewriteDNS.String(), "53"),
		netip.MustParseAddr("127.30.9.100"), netip.Prefix{}, e.all)
	e.expect(t, "hostNetwork client on node-n, direct", e.h.DNS, netip.MustParseAddr("127.30.0.9"), netip.Prefix{}, e.all)
	e.expect(t, "web-n as client (ECS), direct", e.h.DNS, netip.Addr{}, netip.MustParsePrefix("10.244.9.10/32"), e.all)
	a := e.zones[0]
	e.expect(t, "pod on node-a, direct", e.h.DNS, a.client(0), netip.Prefix{}, a.pods)
}

// overlappingPodCIDRs: node-0, in zone-b, has node-a's podCIDR, and node-x,
// in zone-c, half of it. A client in both /24s belongs to the node whose
// name sorts first (node-0), one also in the /25 to node-x (the longest
// prefix); when both Nodes go, node-a's clients are node-a's again.
func (e *pathsEnv) overlappingPodCIDRs(t *testing.T) {
	a, b, c := e.zones[0], e.zones[1], e.zones[2]
	e.createNode(t, "node-0", b.zone, "", a.podCIDR.String())
	e.createNode(t, "node-x", c.zone, "", "127.30.1.128/25")
	low, high := netip.MustParseAddr("127.30.1.100"), netip.MustParseAddr("127.30.1.200")
	e.awaitLocated(t, low.String(), answer.ExplainLocation{Node: "node-0", Zone: b.zone, Region: "region-1", By: "pod-cidr"})
	e.awaitLocated(t, high.String(), answer.ExplainLocation{Node: "node-x", Zone: c.zone, Region: "region-1", By: "pod-cidr"})
	rewrite := net.JoinHostPort(rewriteDNS.String(), "53")
	e.expect(t, "pod in node-a's and node-0's range via CoreDNS with rewrite", rewrite, low, netip.Prefix{}, b.pods)
	e.expect(t, "pod also in node-x's /25 via CoreDNS with rewrite", rewrite, high, netip.Prefix{}, c.pods)
	e.deleteNode(t, "node-0")
	e.deleteNode(t, "node-x")
	e.awaitLocated(t, high.String(), answer.ExplainLocation{Node: a.node, Zone: a.zone, Region: "region-1", By: "pod-cidr"})
	e.expect(t, "pod on node-a via CoreDNS with rewrite, the overlaps gone", rewrite, high, netip.Prefix{}, a.pods)
}

// clientOnTwoNodes: node-1, in zone-c, lists node-b's address too. A client
// at it belongs to the node whose name sorts first (node-1); when node-1
// goes, to node-b again.
func (e *pathsEnv) clientOnTwoNodes(t *testing.T) {
	b, c := e.zones[1], e.zones[2]
	e.createNode(t, "node-1", c.zone, b.addr.String(), "")
	e.awaitLocated(t, b.addr.String(), answer.ExplainLocation{Node: "node-1", Zone: c.zone, Region: "region-1", By: "node-address"})
	e.expect(t, "hostNetwork client at node-b's and node-1's address, direct", e.h.DNS, b.addr, netip.Prefix{}, c.pods)
	e.deleteNode(t, "node-1")
	e.awaitLocated(t, b.addr.String(), answer.ExplainLocation{Node: b.node, Zone: b.zone, Region: "region-1", By: "node-address"})
	e.expect(t, "hostNetwork client on node-b, direct, node-1 gone", e.h.DNS, b.addr, netip.Prefix{}, b.pods)
}

// unknownECS: an ECS address that nothing places is an unknown client,
// whatever the query's source, and gets every pod: IPv4, IPv6, and a
// prefix wider than any node's range; through CoreDNS with rewrite, a
// source in no range. A /0 option names nobody: the source is the client.
func (e *pathsEnv) unknownECS(t *testing.T) {
	a := e.zones[0]
	for _, ecs := range []string{"198.51.100.7/32", "2001:db8::7/128", "127.30.0.0/16"} {
		e.expect(t, "pod on node-a, direct, ECS "+ecs, e.h.DNS, a.client(0), netip.MustParsePrefix(ecs), e.all)
	}
	e.expect(t, "unknown source 127.31.0.1 via CoreDNS with rewrite", net.JoinHostPort(rewriteDNS.String(), "53"),
		netip.MustParseAddr("127.31.0.1"), netip.Prefix{}, e.all)
	e.expect(t, "pod on node-a, direct, ECS 0.0.0.0/0", e.h.DNS, a.client(0), netip.MustParsePrefix("0.0.0.0/0"), a.pods)
}

// nodeDeleted: node-c goes while its pods serve (this control plane runs
// no pod garbage collector). Its address and range place nobody, so its
// cache, its pods and the CoreDNS without rewrite that runs there get
// every endpoint of manual, whose owner keeps node-c's endpoint; a client
// at that endpoint's address is still placed in zone-c by the endpoint.
// web's slice is the EndpointSlice controller's, which drops a deleted
// Node's pods at the Service's next sync ("skipping Pod ... Node not
// found"), whenever that comes: its clients on node-c get every pod of
// web the slice holds at the time, with or without node-c's.
func (e *pathsEnv) nodeDeleted(t *testing.T) {
	c := e.zones[2]
	cache, rewrite := net.JoinHostPort(c.addr.String(), "53"), net.JoinHostPort(rewriteDNS.String(), "53")
	manual := e.manualName()
	e.expectFor(t, manual, "pod on node-c via node-c's cache, before", cache, c.client(0), netip.Prefix{}, []string{c.manualPod()})
	e.deleteNode(t, c.node)
	e.awaitLocated(t, c.addr.String(), answer.ExplainLocation{By: "unknown"})
	// The cache may hold hdns's last zone-c answer for its TTL.
	e.awaitFor(t, manual, "pod on node-c via node-c's cache", cache, c.client(0), netip.Prefix{}, e.manualPods())
	e.expectFor(t, manual, "pod on node-c via CoreDNS with rewrite", rewrite, c.client(1), netip.Prefix{}, e.manualPods())
	e.expectFor(t, manual, "pod on node-a via CoreDNS without rewrite (on node-c)", net.JoinHostPort(plainDNS.String(), "53"),
		e.zones[0].client(0), netip.Prefix{}, e.manualPods())
	e.expectFor(t, manual, "node-c's endpoint "+c.manualPod()+" as client (ECS), direct", e.h.DNS, netip.Addr{},
		netip.PrefixFrom(netip.MustParseAddr(c.manualPod()), 32), []string{c.manualPod()})

	withoutC := slices.DeleteFunc(slices.Clone(e.all), func(a string) bool { return slices.Contains(c.pods, a) })
	r, err := exchangeFrom(rewrite, c.client(1), netip.Prefix{}, e.name, dns.TypeA)
	if err != nil {
		t.Fatalf("web, pod on node-c via CoreDNS with rewrite: %v", err)
	}
	if ok, got := answerOf(r, e.all); !ok {
		if ok, _ := answerOf(r, withoutC); !ok {
			t.Errorf("web, pod on node-c via CoreDNS with rewrite: %s, want NOERROR %v or, node-c's pods dropped, %v", got, e.all, withoutC)
		}
	}
}

// answerOf describes r and reports whether it is NOERROR with exactly the
// A records want (sorted).
func answerOf(r *dns.Msg, want []string) (bool, string) {
	got := addrsOf(r)
	slices.Sort(got)
	return r.Rcode == dns.RcodeSuccess && slices.Equal(got, want), fmt.Sprintf("%s %v", dns.RcodeToString[r.Rcode], got)
}

// expect asks for web once and fails t unless the reply is NOERROR with
// exactly want. It returns the reply, nil when none came.
func (e *pathsEnv) expect(t *testing.T, what, server string, src netip.Addr, ecs netip.Prefix, want []string) *dns.Msg {
	t.Helper()
	return e.expectFor(t, e.name, what, server, src, ecs, want)
}

// expectFor is expect for the Service name.
func (e *pathsEnv) expectFor(t *testing.T, name, what, server string, src netip.Addr, ecs netip.Prefix, want []string) *dns.Msg {
	t.Helper()
	r, err := exchangeFrom(server, src, ecs, name, dns.TypeA)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return nil
	}
	if ok, got := answerOf(r, want); !ok {
		t.Errorf("%s: %s, want NOERROR %v", what, got, want)
	}
	return r
}

// echoesECS describes r's client subnet option and reports whether it
// repeats the family, source prefix length and address of the query's,
// ecs, as RFC 7871 7.2.1 requires of every reply to a query that has one.
func echoesECS(r *dns.Msg, ecs netip.Prefix) (bool, string) {
	o := echoedECS(r)
	if o == nil {
		return false, "none"
	}
	family := uint16(1)
	if ecs.Addr().Is6() {
		family = 2
	}
	return o.Family == family && int(o.SourceNetmask) == ecs.Bits() && o.Address.Equal(net.IP(ecs.Masked().Addr().AsSlice())),
		o.String()
}

// await asks for web until the reply is NOERROR with exactly want, for at
// most answerTimeout; any other rcode fails t at once.
func (e *pathsEnv) await(t *testing.T, what, server string, src netip.Addr, ecs netip.Prefix, want []string) {
	t.Helper()
	e.awaitFor(t, e.name, what, server, src, ecs, want)
}

// awaitFor is await for the Service name.
func (e *pathsEnv) awaitFor(t *testing.T, name, what, server string, src netip.Addr, ecs netip.Prefix, want []string) {
	t.Helper()
	awaitCond(t, what, answerTimeout, func() (bool, string) {
		r, err := exchangeFrom(server, src, ecs, name, dns.TypeA)
		if err != nil {
			return false, err.Error()
		}
		if r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: %s, want NOERROR", what, dns.RcodeToString[r.Rcode])
		}
		return answerOf(r, want)
	})
}

// awaitLocated waits until /debug/explain locates client at want: the
// Node informer has delivered the change.
func (e *pathsEnv) awaitLocated(t *testing.T, client string, want answer.ExplainLocation) {
	t.Helper()
	awaitCond(t, "client "+client+" located", answerTimeout, func() (bool, string) {
		got := e.h.explainLocation(t, e.name, client)
		return got == want, fmt.Sprintf("%+v, want %+v", got, want)
	})
}
