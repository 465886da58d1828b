//go:build bench

package balance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

const (
	// zoneKey is the HDNS_BENCH_ONLY key that runs TestBalanceZones (the
	// smoke run runs it too).
	zoneKey   = "zone"
	zoneCount = 3
	// zoneSubnet0 is the pod subnet of the first zone scenario, above every
	// subnet TestBalance uses.
	zoneSubnet0 = 220
	// zoneK8sAddr is where the zone test's CoreDNS kubernetes plugin
	// answers; the cache of node g listens on zoneNodeAddr(g).
	zoneK8sAddr = "127.54.0.1"
)

var zoneNames = [zoneCount]string{"zone-a", "zone-b", "zone-c"}

// zonePolicies are the policies the zone test compares: the locality
// step spelled in the annotation and through the API, and the zone-blind
// policy the README recommends.
var zonePolicies = []struct {
	key, desc, annotation string
	// preferSameZone sets spec.trafficDistribution: PreferSameZone.
	preferSameZone bool
}{
	{key: "pz", desc: "prefer-zone, least-loaded, first=1", annotation: "prefer-zone, least-loaded, first=1"},
	{key: "td", desc: "trafficDistribution PreferSameZone + least-loaded, first=1", annotation: "least-loaded, first=1", preferSameZone: true},
	{key: "blind", desc: "least-loaded, first=1 (zone-blind)", annotation: "least-loaded, first=1"},
}

// zonePaths are how the zone test's clients reach hdns: directly from
// their own (pod) address, or through their node's cache, which forwards
// from the node's address.
var zonePaths = []struct {
	key, desc string
	cached    bool
}{
	{key: "direct", desc: "direct"},
	{key: "nl", desc: "cache 30 (NodeLocal-like)", cached: true},
}

// zoneLayout places nodes, pods and clients: zoneCount zones of
// nodesPerZone nodes (node g is in zone g / nodesPerZone), each node with
// hostsPerNode Go client hosts per scenario and one cache, and n pods per
// zone, pod j of a zone on the zone's node j mod nodesPerZone.
//
// Addresses: the API server refuses loopback pod IPs in EndpointSlices,
// so pods keep 10.244.a.b (mapped to their listeners as in TestBalance).
// Nodes take loopback addresses, which the API accepts and the clients
// can use as their source: node g's InternalIP 127.54.1.(g+1) is also
// where its cache listens and forwards from (a NodeLocal DNSCache asks
// from its node's address), and its podCIDR 127.55.g.0/24 holds its
// client hosts, as a client pod's address lies in its node's range.
type zoneLayout struct {
	nodesPerZone, hostsPerNode, n int
}

func (l zoneLayout) nodes() int            { return zoneCount * l.nodesPerZone }
func (l zoneLayout) nodeZone(g int) int    { return g / l.nodesPerZone }
func zoneNodeName(g int) string            { return fmt.Sprintf("zn-%d", g) }
func zoneNodeAddr(g int) string            { return fmt.Sprintf("127.54.1.%d", g+1) }
func zonePodCIDR(g int) string             { return fmt.Sprintf("127.55.%d.0/24", g) }
func (l zoneLayout) backendZone(i int) int { return i / l.n }
func (l zoneLayout) backendNode(i int) int {
	return l.backendZone(i)*l.nodesPerZone + i%l.n%l.nodesPerZone
}
func (l zoneLayout) clientAddr(sc, g, h int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 55, byte(g), byte(sc*l.hostsPerNode + h + 1)})
}

// zoneScenario is one policy on one path for one size: its own Service
// over its own 3n pods, backends and clients, as TestBalance's scenarios.
type zoneScenario struct {
	policy, path  int // indexes into zonePolicies, zonePaths
	service, fqdn string
	subnet        int
	bk            *backends
	errs          atomic.Int64
	// nodeOf is the node of each client address of the scenario.
	nodeOf map[netip.Addr]int
}

// zoneResult is one row of the zone report.
type zoneResult struct {
	N            int // pods per zone
	Path, Policy string
	Conns        int
	// InZone is the share of connections to a backend in the client's
	// zone; Unplaced counts connections from an address no client has.
	InZone   float64
	Unplaced int
	PerZone  [zoneCount]spread
	// Floor is answerFloor, InTurn inTurnDeal and Random randomDeal of
	// each zone's answers (see usedAnswers): what a balancer of whole
	// answers could reach in the window. Handouts is max/mean of hdns's
	// own first places per pod in each zone
	// (hdns_policy_endpoint_handouts_total), -1 when unread.
	Floor, InTurn, Random, Handouts [zoneCount]float64
	// AnswersPerPod is the answers per pod, ConnsPerAnswer and AnswerCV
	// the mean and CV of connections per answer, over all zones.
	AnswersPerPod, ConnsPerAnswer, AnswerCV float64
	Errors                                  int
}

// TestBalanceZones measures answers that stay in the client's zone on the
// real control plane: Nodes in three zones with loopback addresses and
// podCIDRs (see zoneLayout), n pods per zone bound to them (the
// EndpointSlice controller writes each endpoint's nodeName and zone), Go
// client hosts on every node asking hdns directly from their pod address
// or through their node's cache, and for each, the share of connections
// that land in the client's zone and max/mean among each zone's pods.
// Opt-in: HDNS_BENCH_ONLY=zone (HDNS_BENCH_ZONE_NODES sets the nodes per
// zone); the smoke run runs it with 3 pods per zone and one node per zone.
func TestBalanceZones(t *testing.T) {
	cfg := benchConfig(t)
	smoke := os.Getenv("HDNS_BENCH_SMOKE") != "" || testing.Short()
	if !smoke && !slices.Contains(cfg.only, zoneKey) {
		t.Skip("opt-in: HDNS_BENCH_ONLY=" + zoneKey)
	}
	corednsBin := os.Getenv("HDNS_E2E_COREDNS")
	if corednsBin == "" {
		t.Fatal("HDNS_E2E_COREDNS is not set (test/e2e/tools/build-coredns.sh prints it)")
	}
	began := time.Now()
	ctx := context.Background()
	hdnsBin := hdnsBinary(t)
	t.Logf("hdns built after %v", time.Since(began).Round(time.Millisecond))
	lay := zoneLayout{nodesPerZone: zoneNodesPerZone(t, cfg, smoke), hostsPerNode: cfg.goHostsPerCache}

	cp := harness.Start(t, harness.Options{})
	if _, err := cp.CreateNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}
	if err := createZoneNodes(ctx, cp, lay); err != nil {
		t.Fatal(err)
	}
	h := startHDNS(t, hdnsBin, "--kubeconfig", cp.KubeconfigPath, "--endpoint-metrics", "--zone", "lb.cluster.local.", "--ttl", fmt.Sprintf("%ds", cfg.ttl))
	t.Logf("hdns up after %v", time.Since(began).Round(time.Millisecond))
	startCoreDNS(t, corednsBin, zoneCorefile(cfg, cp.KubeconfigPath, h, lay), zoneCacheAddrs(lay))
	t.Logf("CoreDNS up after %v", time.Since(began).Round(time.Millisecond))
	awaitLocated(t, h, lay)
	t.Logf("control plane, %d nodes, hdns and %d caches up after %v", lay.nodes(), lay.nodes(), time.Since(began).Round(time.Millisecond))

	var results []zoneResult
	for s, n := range cfg.sizes {
		lay.n = n
		scs := createZoneScenarios(ctx, t, cp, h, lay, s)
		// One path at a time, as TestBalance runs its slots.
		for pa, path := range zonePaths {
			t.Run(fmt.Sprintf("%s/N=%d", path.key, n), func(t *testing.T) {
				rs := runZoneScenarios(t, cfg, h, lay, slices.DeleteFunc(slices.Clone(scs), func(sc *zoneScenario) bool { return sc.path != pa }))
				results = append(results, rs...)
				t.Logf("\n%s", zoneTable(rs))
			})
		}
	}
	report := fmt.Sprintf("\n# hdns balance within zones\n\n%s\n\n%s\n%s", zoneModel(cfg, lay), zoneTable(results), zoneVerdict(results))
	t.Logf("\n%s", report)
	appendReport(t, report)
	t.Logf("zone benchmark took %v", time.Since(began).Round(time.Second))
}

// zoneNodesPerZone is HDNS_BENCH_ZONE_NODES, else cfg.caches (1 in the
// smoke run): each node has one cache, so that each zone has as many
// caches and client hosts as TestBalance has in all, and its rows compare
// with TestBalance's.
func zoneNodesPerZone(t *testing.T, cfg config, smoke bool) int {
	v := os.Getenv("HDNS_BENCH_ZONE_NODES")
	switch {
	case v == "" && smoke:
		return 1
	case v == "":
		return cfg.caches
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n*zoneCount > 250 {
		t.Fatalf("HDNS_BENCH_ZONE_NODES=%q: want nodes per zone from 1 to %d", v, 250/zoneCount)
	}
	return n
}

// hdnsBinary is HDNS_BENCH_HDNS, else hdns built from the work tree for
// the test.
func hdnsBinary(t *testing.T) string {
	if bin := os.Getenv("HDNS_BENCH_HDNS"); bin != "" {
		return bin
	}
	build := harness.Binary{Pkg: harness.HDNS}
	t.Cleanup(build.Remove)
	return build.Path(t)
}

// appendReport appends report to HDNS_BENCH_OUT/balance.md, when set:
// TestBalance, which runs first, writes the file anew.
func appendReport(t *testing.T, report string) {
	dir := os.Getenv("HDNS_BENCH_OUT")
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, "balance.md"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(report); err != nil {
		t.Fatal(err)
	}
}

// createZoneNodes creates the layout's Nodes with their zone labels,
// addresses and podCIDRs, their status written as a kubelet writes it.
func createZoneNodes(ctx context.Context, cp *harness.ControlPlane, lay zoneLayout) error {
	for g := range lay.nodes() {
		err := cp.CreateNode(ctx, fixture.Node{
			Name: zoneNodeName(g),
			Labels: map[string]string{corev1.LabelHostname: zoneNodeName(g),
				corev1.LabelTopologyZone: zoneNames[lay.nodeZone(g)], corev1.LabelTopologyRegion: "region-1"},
			InternalIP: zoneNodeAddr(g),
			PodCIDRs:   []string{zonePodCIDR(g)},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func zoneCacheAddrs(lay zoneLayout) []string {
	addrs := []string{zoneK8sAddr}
	for g := range lay.nodes() {
		addrs = append(addrs, zoneNodeAddr(g))
	}
	return addrs
}

// zoneCorefile is one CoreDNS with the kubernetes plugin on zoneK8sAddr
// (startCoreDNS asks every address for kubernetes.default) and one cache
// per node on the node's address, forwarding lb.cluster.local to hdns
// from that address, as a NodeLocal DNSCache does from its node.
func zoneCorefile(cfg config, kubeconfig string, h *hdnsProc, lay zoneLayout) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster.local:%s {\n    bind %s\n    kubernetes cluster.local {\n        kubeconfig %s\n        ttl %d\n    }\n}\n", dnsPort, zoneK8sAddr, kubeconfig, cfg.ttl)
	cache := fmt.Sprintf("    cache 30 {\n        success 9984 30 %d\n    }\n", cfg.ttl)
	for g := range lay.nodes() {
		addr := zoneNodeAddr(g)
		fmt.Fprintf(&b, "lb.cluster.local:%s {\n    bind %s\n%s    forward . %s {\n        source_address %s\n    }\n}\n", dnsPort, addr, cache, h.DNS, addr)
		fmt.Fprintf(&b, "cluster.local:%s {\n    bind %s\n%s    forward . %s:%s {\n        source_address %s\n    }\n}\n", dnsPort, addr, cache, zoneK8sAddr, dnsPort, addr)
	}
	return b.String()
}

// awaitLocated waits until hdns places every node's address and a client
// address of every node's podCIDR in the node's zone.
func awaitLocated(t *testing.T, h *hdnsProc, lay zoneLayout) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for g := range lay.nodes() {
		for _, client := range []string{zoneNodeAddr(g), lay.clientAddr(0, g, 0).String()} {
			for {
				zone, by, err := h.locate("kubernetes.default.svc.lb.cluster.local.", client)
				if err == nil && zone == zoneNames[lay.nodeZone(g)] {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("hdns places client %s in zone %q (by %s, error %v), want %s", client, zone, by, err, zoneNames[lay.nodeZone(g)])
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// locate returns the zone /debug/explain places client in, and how.
func (h *hdnsProc) locate(name, client string) (zone, by string, err error) {
	q := url.Values{"name": {name}, "type": {"A"}, "client": {client}}
	resp, err := http.Get("http://" + h.Admin + "/debug/explain?" + q.Encode())
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var ex struct {
		ClientLocation *struct{ Zone, By string } `json:"clientLocation"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ex); err != nil {
		return "", "", err
	}
	if ex.ClientLocation == nil {
		return "", "", fmt.Errorf("explain for %s: no clientLocation", client)
	}
	return ex.ClientLocation.Zone, ex.ClientLocation.By, nil
}

// createZoneScenarios creates every policy × path scenario of size index
// s (lay.n pods per zone) and waits until hdns serves all their pods.
func createZoneScenarios(ctx context.Context, t *testing.T, cp *harness.ControlPlane, h *hdnsProc, lay zoneLayout, s int) []*zoneScenario {
	t.Helper()
	var scs []*zoneScenario
	var pods []harness.PodOptions
	for pa, path := range zonePaths {
		for pi, pol := range zonePolicies {
			sc := &zoneScenario{policy: pi, path: pa, subnet: zoneSubnet0 + (s*len(zonePaths)+pa)*len(zonePolicies) + pi,
				service: fmt.Sprintf("zone-%s-%s-n%d", pol.key, path.key, lay.n)}
			sc.fqdn = sc.service + "." + namespace + ".svc.lb.cluster.local."
			scs = append(scs, sc)
			for i := range zoneCount * lay.n {
				g := lay.backendNode(i)
				o := podOptions(sc.subnet, i)
				o.Node, o.HostIP = zoneNodeName(g), zoneNodeAddr(g)
				pods = append(pods, o)
			}
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: sc.service, Namespace: namespace,
					Annotations: map[string]string{policyAnno: pol.annotation}},
				Spec: corev1.ServiceSpec{
					ClusterIP: corev1.ClusterIPNone,
					Selector:  map[string]string{setLabel: setName(sc.subnet)},
					Ports:     []corev1.ServicePort{{Name: "http", Port: 80}},
				},
			}
			if pol.preferSameZone {
				svc.Spec.TrafficDistribution = new(corev1.ServiceTrafficDistributionPreferSameZone)
			}
			if _, err := cp.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create service %s: %v", sc.service, err)
			}
		}
	}
	if err := createPods(ctx, cp, pods); err != nil {
		t.Fatal(err)
	}
	want := zoneCount * lay.n
	deadline := time.Now().Add(3 * time.Minute)
	for _, sc := range scs {
		if _, err := cp.WaitForEndpointSlices(ctx, namespace, sc.service, func(sl []discoveryv1.EndpointSlice) bool { return readyEndpoints(sl) == want }); err != nil {
			t.Fatal(err)
		}
		for {
			got, err := h.candidates(sc.fqdn)
			if err == nil && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d endpoints served (error %v), want %d", sc.service, got, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return scs
}

// runZoneScenarios runs the scenarios scs together for the warm-up and
// steady windows and returns their rows.
func runZoneScenarios(t *testing.T, cfg config, h *hdnsProc, lay zoneLayout, scs []*zoneScenario) []zoneResult {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.warm+cfg.steady)
	defer cancel()
	var wg sync.WaitGroup
	for _, sc := range scs {
		sc.bk = startBackends(t, sc.subnet, zoneCount*lay.n, begin)
		sc.nodeOf = map[netip.Addr]int{}
		for g := range lay.nodes() {
			server := h.DNS
			if zonePaths[sc.path].cached {
				server = zoneNodeAddr(g) + ":" + dnsPort
			}
			for hst := range lay.hostsPerNode {
				src := lay.clientAddr(sc.path*len(zonePolicies)+sc.policy, g, hst)
				sc.nodeOf[src] = g
				wg.Go(func() { goClient(ctx, src, server, sc.fqdn, sc.bk.port, cfg.goPause, &sc.errs) })
			}
		}
	}
	// hdns's own first places per pod over the measured window, as
	// TestBalance reads them: a diagnostic beside the connections.
	time.Sleep(cfg.warm - time.Since(begin))
	before, errBefore := h.handouts()
	time.Sleep(cfg.warm + cfg.steady - time.Since(begin))
	after, errAfter := h.handouts()
	if err := errors.Join(errBefore, errAfter); err != nil {
		t.Logf("hdns handout metrics: %v", err)
		before, after = nil, nil
	}
	wg.Wait()
	var rs []zoneResult
	for _, sc := range scs {
		r := zoneMeasure(sc, lay, time.Duration(cfg.ttl)*time.Second, cfg.warm, cfg.warm+cfg.steady)
		r.Handouts = zoneHandouts(sc, lay, before, after)
		rs = append(rs, r)
	}
	return rs
}

// zoneHandouts is max/mean of hdns's handouts per pod in each zone
// between the readings before and after; -1 for each when unread.
func zoneHandouts(sc *zoneScenario, lay zoneLayout, before, after map[string]map[string]float64) [zoneCount]float64 {
	var out [zoneCount]float64
	for z := range zoneCount {
		out[z] = -1
		if before == nil || after == nil {
			continue
		}
		counts := make([]int, lay.n)
		for j := range lay.n {
			key := namespace + "/" + podOptions(sc.subnet, z*lay.n+j).Name
			counts[j] = int(after[sc.service][key] - before[sc.service][key])
		}
		out[z] = measure(counts).MaxOverAvg
	}
	return out
}

// zoneMeasure counts a scenario's connections in [from, to): in the
// client's zone or not, and per pod within each zone; and the answers
// that sent them (usedAnswers, ttl the answers' TTL), with what a
// balancer of whole answers could reach from them.
func zoneMeasure(sc *zoneScenario, lay zoneLayout, ttl, from, to time.Duration) zoneResult {
	r := zoneResult{N: lay.n, Path: zonePaths[sc.path].desc, Policy: zonePolicies[sc.policy].desc, Errors: int(sc.errs.Load())}
	counts := make([]int, zoneCount*lay.n)
	inZone := 0
	var placed []event
	for _, e := range sc.bk.snapshot() {
		if e.at < from || e.at >= to || e.backend >= len(counts) {
			continue
		}
		counts[e.backend]++
		r.Conns++
		g, ok := sc.nodeOf[e.from]
		switch {
		case !ok:
			r.Unplaced++
			continue
		case lay.nodeZone(g) == lay.backendZone(e.backend):
			inZone++
		}
		placed = append(placed, e)
	}
	if r.Conns > 0 {
		r.InZone = float64(inZone) / float64(r.Conns)
	}
	answers := usedAnswers(placed, sc.nodeOf, ttl, zonePaths[sc.path].cached)
	byZone := make([][]usedAnswer, zoneCount)
	for _, a := range answers {
		z := lay.backendZone(a.backend)
		byZone[z] = append(byZone[z], a)
	}
	for z := range zoneCount {
		r.PerZone[z] = measure(counts[z*lay.n : (z+1)*lay.n])
		r.Floor[z] = answerFloor(len(byZone[z]), lay.n)
		r.InTurn[z] = inTurnDeal(byZone[z], lay.n)
		r.Random[z] = randomDeal(byZone[z], lay.n)
	}
	r.AnswersPerPod = float64(len(answers)) / float64(zoneCount*lay.n)
	r.ConnsPerAnswer, r.AnswerCV = answerWeights(answers)
	return r
}

func zoneTable(rs []zoneResult) string {
	var b strings.Builder
	b.WriteString("| pods per zone | path | policy | conns | in client's zone | max/mean zone-a / b / c | floor | dealt in turn | dealt at random | hdns handouts max/mean | answers per pod | conns per answer (CV) | conns zone-a / b / c | errors |\n")
	b.WriteString("|---:|---|---|---:|---:|---|---|---|---|---|---:|---:|---|---:|\n")
	for _, r := range rs {
		var mm, conns [zoneCount]float64
		for z, s := range r.PerZone {
			mm[z], conns[z] = s.MaxOverAvg, float64(s.Total)
		}
		unplaced := ""
		if r.Unplaced > 0 {
			unplaced = fmt.Sprintf(" (%d from unknown addresses)", r.Unplaced)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %d | %.1f%%%s | %s | %s | %s | %s | %s | %.1f | %.1f (%.2f) | %s | %d |\n",
			r.N, r.Path, r.Policy, r.Conns, 100*r.InZone, unplaced, perZone("%.2f", mm), perZone("%.2f", r.Floor),
			perZone("%.2f", r.InTurn), perZone("%.2f", r.Random), perZone("%.2f", r.Handouts), r.AnswersPerPod, r.ConnsPerAnswer, r.AnswerCV,
			perZone("%.0f", conns), r.Errors)
	}
	return b.String()
}

// perZone formats one figure per zone as "a / b / c", a negative one
// (not measured) as "—".
func perZone(format string, v [zoneCount]float64) string {
	var out []string
	for _, x := range v {
		if x < 0 {
			out = append(out, "—")
			continue
		}
		out = append(out, fmt.Sprintf(format, x))
	}
	return strings.Join(out, " / ")
}

// zoneVerdict states the targets (≥ 95% in the client's zone, max/mean ≤
// 1.05 within each zone) for the locality rows, and when a miss is the
// window's: a strict rotation of its answers above 1.05 too. A report, not a failure.
func zoneVerdict(rs []zoneResult) string {
	var b strings.Builder
	b.WriteString("\nTargets for the locality rows: ≥ 95% of connections in the client's zone, max/mean ≤ 1.05 within each zone:\n")
	for _, r := range rs {
		if strings.Contains(r.Policy, "zone-blind") {
			continue
		}
		worst, even := 0.0, 0.0
		for z, s := range r.PerZone {
			worst, even = max(worst, s.MaxOverAvg), max(even, r.InTurn[z])
		}
		mark := "meets"
		if r.InZone < 0.95 || worst > 1.05 {
			mark = "MISSES"
		}
		if worst > 1.05 && even > 1.05 {
			mark += ", as a strict rotation of the same answers would: the window is too short to tell"
		}
		fmt.Fprintf(&b, "- %d per zone, %s, %s: %.1f%% in zone, worst zone max/mean %.2f (dealt in turn %.2f): %s\n",
			r.N, r.Path, r.Policy, 100*r.InZone, worst, even, mark)
	}
	return b.String()
}

func zoneModel(cfg config, lay zoneLayout) string {
	cachedPerZone := lay.nodesPerZone * int(cfg.steady/time.Second) / cfg.ttl
	largest := slices.Max(cfg.sizes)
	return fmt.Sprintf(`Model. %d zones of %d Nodes each (labels topology.kubernetes.io/zone and region, status written as a kubelet writes it),
each Node with a loopback InternalIP 127.54.1.g and podCIDR 127.55.g.0/24, which hdns reads from the API (the API refuses
loopback pod IPs, not loopback node addresses or ranges). Per scenario: its own headless Service over its own N pods per zone,
pod j of a zone bound to the zone's node j mod %d (pods keep 10.244.a.b, mapped to their listeners as above; the EndpointSlice
controller writes each endpoint's nodeName and zone). Go client hosts: %d per node per scenario, each from its own address
in its node's podCIDR (hdns places it "by pod-cidr"), connecting from that address to the first address of each answer, then
pausing %v. direct: the hosts ask hdns. cache: each host asks its node's cache (CoreDNS cache 30, min TTL %d s, forward
with source_address = the node's address: hdns places the cache "by node-address", as a NodeLocal DNSCache forwarding from
its node). glibc clients are left out: glibc cannot choose its source address, so neither hdns nor the backends could place
them. The scenarios of one size and path run at once; warm-up %v (not counted), then %v measured. "in client's zone" is the share
of connections whose backend is in the zone of the client's node, counted at the backends from the connection's source
address; max/mean is over the N pods of each zone (per zone a / b / c).
What the window allows: connections come in whole answers, so max/mean has a floor that no balancer of answers goes under.
An answer is what one lookup gave: directly, each connection (Go's resolver keeps no cache); through a cache, a run of one
node's connections to one pod (the node's cache holds one first place for one TTL, %d s; a connection to the previous answer's
pod just after the renewal still counts to it): about %d caches per zone × %v / %d s = %d cached answers per zone in the
window, %.1f per pod at N = %d, a little fewer as a cache renews only when asked after the expiry. "answers per pod" counts
them. "floor" is ceil(k)/k for k = a zone's answers / N: max/mean of answers per pod at best, and of connections too if every
answer brought as many. The deals give each pod the same number of the zone's answers (give or take one), each with the
connections it actually brought: "dealt in turn" in the order the answers began (a strict rotation: each pod's answers spread
over the window), "dealt at random" in random order (mean of %d deals), which also feels what changes in time (fewer
connections per answer while the machine is busy). Both count answers perfectly and are blind to how many connections each
will bring: they add the spread of connections per answer ("conns per answer", mean and CV) to the floor. References, not
bounds: a balancer can land below them by chance. "hdns handouts max/mean" is hdns's own count of first places per pod in
each zone over the measured window (hdns_policy_endpoint_handouts_total), which through caches also counts a cache's copies
of one question (answered alike, counted once in hdns's ledger), so it reads above what hdns balanced.
HDNS_BENCH_STEADY sets the measured window.`,
		zoneCount, lay.nodesPerZone, lay.nodesPerZone, lay.hostsPerNode, cfg.goPause, cfg.ttl, cfg.warm, cfg.steady,
		cfg.ttl, lay.nodesPerZone, cfg.steady, cfg.ttl, cachedPerZone, float64(cachedPerZone)/float64(largest), largest, randomDeals)
}
