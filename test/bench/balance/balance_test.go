//go:build bench

// Package balance is the balance-quality benchmark: real backends
// count the connections that real resolver clients (Go's pure resolver,
// glibc getaddrinfo) open to the first address of their answers, directly
// and through real CoreDNS caches, with hdns's policies and, for
// comparison, CoreDNS's kubernetes plugin serving the same Services from
// the same control plane.
//
// Run it with
//
//	HDNS_E2E_BIN=$(test/e2e/tools/build.sh) HDNS_E2E_COREDNS=$(test/e2e/tools/build-coredns.sh) \
//	    go test -tags bench -run . -v -timeout 30m ./test/bench/balance/
//
// HDNS_BENCH_SMOKE=1 (or -short) runs a seconds-long smoke version;
// HDNS_BENCH_OUT=dir also writes the report to dir/balance.md;
// HDNS_BENCH_TTL=s sets the answer TTL (default 1, see the model below)
// and stretches every window by s (HDNS_BENCH_TTL=5 runs ~30 minutes).
package balance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
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

	"github.com/hdns-dev/hdns/internal/testproc"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

const (
	namespace  = "bal"
	policyAnno = "hdns.dev/policy"
	// setLabel selects a pod set; every Service over one set selects it.
	setLabel = "bench-set"
	// k8sAddr is where CoreDNS's kubernetes plugin answers (cluster.local);
	// cache c of style s listens on 127.53.s.(c+1). All on dnsPort.
	k8sAddr = "127.53.0.1"
	dnsPort = "1053"
)

// policies are the hdns policies compared; "coredns-kubernetes" is added
// as the baseline.
var policies = []struct{ key, spec string }{
	{"ordered", "ordered"},
	{"rr", "round-robin"},
	{"random", "random"},
	{"ll", "least-loaded"},
	{"ll1", "least-loaded, first=1"}, // what the README recommends
}

const corednsPolicy = "coredns-kubernetes"

// paths are how clients reach the authoritative server.
var paths = []struct {
	key, desc   string
	style       int // cache style index for addresses; 0 = direct
	loadbalance bool
}{
	{"direct", "direct", 0, false},
	{"nl", "cache 30 (NodeLocal-like)", 1, false},
	{"kubeadm", "cache 30 + loadbalance (kubeadm)", 2, true},
}

var clients = []string{"go", "glibc"}

type config struct {
	sizes              []int
	warm, steady, tail time.Duration // tail: after the scale-up
	ttl                int
	caches             int           // caches per cache style
	goHostsPerCache    int           // Go client hosts behind each cache
	glibcThreadsPerC   int           // glibc client threads behind each cache
	goPause, gaiPause  time.Duration // pause between two connections of a client
	window             time.Duration // sliding window of the scale-up measure
	only               []string      // policy keys to run; nil runs all
	// replicas are the numbers of hdns replicas compared; 1 runs every
	// policy, more run least-loaded, first=1 only (replicaPolicy).
	replicas []int
	// pinned makes each cache forward to one replica (cache c to replica
	// c mod R), as a node's cache does when it forwards to the replica on
	// its own node; otherwise a cache lists every replica and draws one
	// per query (forward's random policy), so that the copies of one
	// question (see model) may reach different replicas.
	pinned bool
	// live is the live load variant, nil without it; prefetch is the
	// caches' prefetch arguments, "" for none (variantConfig).
	live     *liveLoad
	prefetch string
}

func benchConfig(t *testing.T) config {
	c := config{
		sizes: []int{3, 10, 50}, warm: 3 * time.Second, steady: 20 * time.Second, tail: 15 * time.Second,
		ttl: 1, caches: 16, goHostsPerCache: 2, glibcThreadsPerC: 1,
		goPause: 100 * time.Millisecond, gaiPause: 100 * time.Millisecond, window: 5 * time.Second,
		replicas: []int{1, 2, 3},
	}
	// For a quicker look at some rows: HDNS_BENCH_SIZES=10 and
	// HDNS_BENCH_ONLY=ll1,k8s (policy keys: ordered rr random ll ll1 k8s).
	if v := os.Getenv("HDNS_BENCH_SIZES"); v != "" {
		c.sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				t.Fatalf("HDNS_BENCH_SIZES=%q: want backend counts ≥ 1", v)
			}
			c.sizes = append(c.sizes, n)
		}
	}
	if v := os.Getenv("HDNS_BENCH_ONLY"); v != "" {
		c.only = strings.Split(v, ",")
	}
	if os.Getenv("HDNS_BENCH_SMOKE") != "" || testing.Short() {
		c.sizes = []int{3}
		c.warm, c.steady, c.tail, c.window = time.Second, 2*time.Second, 2*time.Second, time.Second
		c.caches = 4
		c.replicas = []int{1, 2}
	}
	switch v := os.Getenv("HDNS_BENCH_FORWARD"); v {
	case "", "random":
	case "pinned":
		c.pinned = true
	default:
		t.Fatalf("HDNS_BENCH_FORWARD=%q: want random or pinned", v)
	}
	if v := os.Getenv("HDNS_BENCH_REPLICAS"); v != "" {
		c.replicas = nil
		for _, f := range strings.Split(v, ",") {
			r, err := strconv.Atoi(f)
			if err != nil || r < 1 || r > maxReplicas {
				t.Fatalf("HDNS_BENCH_REPLICAS=%q: want hdns replica counts from 1 to %d", v, maxReplicas)
			}
			c.replicas = append(c.replicas, r)
		}
	}
	if v := os.Getenv("HDNS_BENCH_TTL"); v != "" {
		ttl, err := strconv.Atoi(v)
		if err != nil || ttl < 1 {
			t.Fatalf("HDNS_BENCH_TTL=%q: want whole seconds ≥ 1", v)
		}
		c.ttl = ttl
		// The windows are counted in TTL periods: a longer TTL stretches
		// them, so that each cache still replaces its answer as often.
		for _, d := range []*time.Duration{&c.warm, &c.steady, &c.tail, &c.window} {
			*d *= time.Duration(ttl)
		}
	}
	if v := os.Getenv("HDNS_BENCH_STEADY"); v != "" {
		// As given, after the TTL scaling and in the smoke run too: a
		// longer window gives each pod more cached answers (see the zone
		// report's floor).
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("HDNS_BENCH_STEADY=%q: want a duration > 0", v)
		}
		c.steady = d
	}
	variantConfig(t, &c)
	return c
}

// forwarding says how the caches reach R hdns replicas.
func (c config) forwarding() string {
	if c.pinned {
		return "each cache forwards to one (cache c to replica c mod R, HDNS_BENCH_FORWARD=pinned)"
	}
	return "each cache forwards to all R (CoreDNS forward with several upstreams, its default random policy: a replica drawn per query)"
}

func (c config) model() string {
	return fmt.Sprintf(`Model. Backends: one TCP listener per pod. Pods get ordinary IPs 10.244.a.b, which the clients map to 127.244.a.b in
their dialer: a Pod with a 127.0.0.x IP is accepted, but its endpoint never reaches the EndpointSlice (checked: the slice stays
empty; EndpointSlice validation rejects loopback addresses). Each accepted connection is counted there, never in hdns.
Clients connect to the FIRST address their resolver returns (Go: net.Resolver PreferGo, "ip" lookup, RFC 6724 sorted as
net.Dial sees it; glibc: getaddrinfo AF_UNSPEC/SOCK_STREAM in a C program, name server set through _res), then close and pause
(Go %v, glibc %v). Populations: %d Go client hosts, each with its own source address 127.1.x.y, starting out of step; %d glibc
threads (glibc cannot choose its query source: all are 127.0.0.1).
direct: every client asks the authoritative server (hdns, or CoreDNS kubernetes) itself.
Replicas: rows marked "R hdns" (least-loaded, first=1 only) are served by R hdns processes, each watching the API on its own and
keeping its own ledger, as a Deployment's replicas do: %s, each direct client asks one (host or thread i asks replica i mod R).
cache paths: %d CoreDNS caches per style (a node's NodeLocal DNSCache, or a CoreDNS replica), each with its own client population
(%d Go hosts, %d glibc threads), "cache 30" (+ "loadbalance" for kubeadm), forwarding to hdns / to CoreDNS kubernetes from its own
address (forward's source_address 127.53.s.c, as each node's cache or replica has its own), without ECS: like those caches
in a cluster, and because a cache replays one answer to all its clients, an ECS option would name one client for all of them.
Time is compressed: answers have TTL %d s (hdns --ttl, kubernetes plugin ttl) and the caches' minimum TTL is lowered from 5 s
to the same (success 9984 30 %d), so every cache holds one answer for one TTL, as NodeLocal DNSCache holds a 5 s hdns answer
for 5 s; the %v steady window is %d TTL periods, i.e. %d cached answers per cache. hdns's ledger decays with a fixed 30 s time
constant, so with TTL 1 s it remembers ~30 periods (with TTL 5 s only ~6): HDNS_BENCH_TTL=5 runs uncompressed (windows × 5).
Windows: warm-up %v (not counted), steady %v (max/mean, CV, Jain over N backends), then one pod is added and the run goes on
%v; "1st conn" is when the new pod got its first connection after its creation began (API writes, EndpointSlice
controller, informers, cache TTL), "within 10%%" the first time its connections over a sliding %v window are within 10%% of the mean of all
N+1 (a policy that gives it exactly its share at once reads ≈ 1st conn + 0.9 × window; earlier means it overshot), and "share/mean,
last window" where it stands at the end (> 1: still catching up past its share). Every scenario has its own Service over its own
pods, backends and clients: hdns keeps one handout ledger per pod, shared by all Services and policies that hand the pod out.
"hdns answers max/mean" (first=1 only) is hdns's own count of first places per pod over the steady window (hdns_policy_endpoint_handouts_total),
a diagnostic beside the ground truth: what hdns answered, against what the clients then did. It counts a cache's copies of one
question too, which hdns answers alike and counts once in its ledger, so through caches it reads above what hdns balanced.`,
		c.goPause, c.gaiPause, c.caches*c.goHostsPerCache, c.caches*c.glibcThreadsPerC, c.forwarding(), c.caches, c.goHostsPerCache, c.glibcThreadsPerC,
		c.ttl, c.ttl, c.steady, int(c.steady.Seconds())/c.ttl, int(c.steady.Seconds())/c.ttl,
		c.warm, c.steady, c.tail, c.window)
}

// spec is one scenario: a policy (or CoreDNS kubernetes), a client and a
// path, for one size N. Each has its own Service over its own pods
// 10.244.<subnet>.1..N (+ N+1 at the scale-up), its own backends and its own
// clients: hdns keeps one handout ledger per pod, shared by every Service
// and policy that hands the pod out, so scenarios sharing pods would
// balance each other's handouts rather than their own.
type spec struct {
	policyKey, policy, client, service, fqdn string
	subnet, n                                int
	// replicas is how many hdns replicas serve the scenario: each cache
	// forwards to all of them, each direct client asks one.
	replicas int
}

const (
	combosPerSlot = 2 * 6 // clients × (policies + CoreDNS kubernetes)
	// replicaSubnets is the first pod subnet of the scenarios with more
	// than one hdns replica, after the 3 paths × 3 sizes of slots.
	replicaSubnets = 1 + 3*3*combosPerSlot
	maxReplicas    = 4
	// replicaPolicy is the policy the replica scenarios run: the
	// recommended one, whose target they check.
	replicaPolicy = "ll1"
)

// specs returns the scenarios of path p and size index s (size n): every
// policy with one hdns, and replicaPolicy with each other replica count.
func specs(replicas []int, p, s, n int) []spec {
	var out []spec
	if slices.Contains(replicas, 1) {
		out = singleReplicaSpecs(p, s, n)
	}
	for _, r := range replicas {
		if r == 1 {
			continue
		}
		for ci, client := range clients {
			sp := spec{policyKey: replicaPolicy, client: client, n: n, replicas: r,
				subnet: replicaSubnets + (((r-2)*3+p)*3+s)*len(clients) + ci}
			for _, pol := range policies {
				if pol.key == replicaPolicy {
					sp.policy = pol.spec
				}
			}
			sp.service = fmt.Sprintf("%s-%s-%s-n%d-r%d", sp.policyKey, client, paths[p].key, n, r)
			sp.fqdn = sp.service + "." + namespace + ".svc.lb.cluster.local."
			out = append(out, sp)
		}
	}
	return out
}

// singleReplicaSpecs returns the scenarios with one hdns of path p and
// size index s (size n).
func singleReplicaSpecs(p, s, n int) []spec {
	var out []spec
	for ci, client := range clients {
		for pi := range len(policies) + 1 {
			sp := spec{policyKey: "k8s", policy: corednsPolicy, client: client, n: n, replicas: 1,
				subnet: 1 + (p*3+s)*combosPerSlot + ci*(len(policies)+1) + pi}
			if pi < len(policies) {
				sp.policyKey, sp.policy = policies[pi].key, policies[pi].spec
			}
			sp.service = fmt.Sprintf("%s-%s-%s-n%d", sp.policyKey, client, paths[p].key, n)
			if sp.policyKey == "k8s" {
				sp.fqdn = sp.service + "." + namespace + ".svc.cluster.local."
			} else {
				sp.fqdn = sp.service + "." + namespace + ".svc.lb.cluster.local."
			}
			out = append(out, sp)
		}
	}
	return out
}

func setName(subnet int) string { return fmt.Sprintf("s%d", subnet) }

func TestBalance(t *testing.T) {
	cfg := benchConfig(t)
	if slices.Equal(cfg.only, []string{zoneKey}) {
		t.Skip("HDNS_BENCH_ONLY=" + zoneKey + " runs TestBalanceZones alone")
	}
	corednsBin := os.Getenv("HDNS_E2E_COREDNS")
	if corednsBin == "" {
		t.Fatal("HDNS_E2E_COREDNS is not set (test/e2e/tools/build-coredns.sh prints it)")
	}
	began := time.Now()
	ctx := context.Background()
	bin := t.TempDir()
	hdnsBin := os.Getenv("HDNS_BENCH_HDNS")
	if hdnsBin == "" {
		build := harness.Binary{Pkg: harness.HDNS}
		t.Cleanup(build.Remove)
		hdnsBin = build.Path(t)
	}
	gaiBin := buildGetaddrinfo(t, bin)

	cp := harness.Start(t, harness.Options{})
	t.Logf("control plane up in %v", cp.StartDuration.Round(time.Millisecond))
	if _, err := cp.CreateNamespace(ctx, namespace); err != nil {
		t.Fatal(err)
	}

	// Every scenario has its own Service over its own pods (see spec).
	var svcs []spec
	var pods []harness.PodOptions
	for p := range paths {
		for s, n := range cfg.sizes {
			for _, sp := range specs(cfg.replicas, p, s, n) {
				svcs = append(svcs, sp)
				for i := range n {
					pods = append(pods, podOptions(sp.subnet, i))
				}
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: sp.service, Namespace: namespace},
					Spec: corev1.ServiceSpec{
						ClusterIP: corev1.ClusterIPNone,
						Selector:  map[string]string{setLabel: setName(sp.subnet)},
						Ports:     []corev1.ServicePort{{Name: "http", Port: 80}},
					},
				}
				if sp.policyKey != "k8s" {
					svc.Annotations = map[string]string{policyAnno: cfg.policyAnnotation(sp.policy)}
				}
				if _, err := cp.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					t.Fatalf("create service %s: %v", sp.service, err)
				}
			}
		}
	}
	if err := createPods(ctx, cp, pods); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pods and %d Services created", len(pods), len(svcs))

	kubeconfig := cp.KubeconfigPath
	// hs are the hdns replicas, each watching the API on its own and
	// keeping its own ledger; a scenario with R replicas uses hs[:R].
	args := []string{"--kubeconfig", kubeconfig, "--endpoint-metrics", "--zone", "lb.cluster.local.", "--ttl", fmt.Sprintf("%ds", cfg.ttl)}
	cfg.live.start(t)
	args = append(args, cfg.live.hdnsArgs()...)
	var hs []*hdnsProc
	for range slices.Max(cfg.replicas) {
		hs = append(hs, startHDNS(t, hdnsBin, args...))
	}
	dnsAddrs := []string{k8sAddr}
	for _, r := range cfg.replicas {
		for _, pa := range paths {
			for c := range cfg.caches {
				if pa.style != 0 {
					dnsAddrs = append(dnsAddrs, cacheAddr(pa.style, r, c))
				}
			}
		}
	}
	startCoreDNS(t, corednsBin, corefile(cfg, kubeconfig, hs), dnsAddrs)

	// Every Service has its N endpoints in the API, in hdns and in CoreDNS.
	deadline := time.Now().Add(3 * time.Minute)
	for _, sp := range svcs {
		n := sp.n
		if _, err := cp.WaitForEndpointSlices(ctx, namespace, sp.service, func(sl []discoveryv1.EndpointSlice) bool { return readyEndpoints(sl) == n }); err != nil {
			t.Fatal(err)
		}
		for _, h := range hs[:sp.replicas] {
			for {
				var got int
				var err error
				if sp.policyKey == "k8s" {
					got, err = lookupAll(k8sAddr+":"+dnsPort, sp.fqdn)
				} else {
					got, err = h.candidates(sp.fqdn)
				}
				if err == nil && got == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %d endpoints served (error %v), want %d", sp.service, got, err, n)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	t.Logf("all Services served by hdns and CoreDNS kubernetes after %v", time.Since(began).Round(time.Millisecond))

	var results []result
	for s, n := range cfg.sizes {
		for p, path := range paths {
			t.Run(fmt.Sprintf("%s/N=%d", path.key, n), func(t *testing.T) {
				rs := runSlot(t, cfg, cp, hs, gaiBin, p, s, n)
				results = append(results, rs...)
				t.Logf("\n%s", table(rs))
			})
		}
	}

	report := fmt.Sprintf("# hdns balance quality\n\n%s%s\n\n%s\n%s", cfg.model(), cfg.describeVariants(), table(results), verdict(cfg, results))
	t.Logf("\n%s", report)
	if dir := os.Getenv("HDNS_BENCH_OUT"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "balance.md"), []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hs {
		copies, err := h.metric("hdns_policy_copies_total")
		t.Logf("hdns replica %d: hdns_policy_copies_total %v (%v)", i+1, copies, err)
		if cfg.live != nil {
			up, err := h.metric("hdns_load_source_up")
			failed, err2 := h.metric("hdns_load_source_query_errors_total")
			t.Logf("hdns replica %d: hdns_load_source_up %v, hdns_load_source_query_errors_total %v (%v)", i+1, up, failed, errors.Join(err, err2))
		}
	}
	t.Logf("benchmark took %v", time.Since(began).Round(time.Second))
}

// verdict states the target (max/mean ≤ 1.05 with 10 backends for the
// recommended policy) per client and path. It is a report, not a test
// failure: the figures belong to hdns's policy code.
func verdict(cfg config, results []result) string {
	var b strings.Builder
	b.WriteString("\nTarget: least-loaded, first=1 with N=10, max/mean ≤ 1.05:\n")
	found := false
	for _, r := range results {
		if r.N != 10 || r.Policy != "least-loaded, first=1" {
			continue
		}
		found = true
		mark := "meets"
		if r.Steady.MaxOverAvg > 1.05 {
			mark = "MISSES"
		}
		fmt.Fprintf(&b, "- %s, %s: %.2f %s\n", r.Client, r.Path, r.Steady.MaxOverAvg, mark)
	}
	if !found {
		b.WriteString("- (N=10 not run in this mode)\n")
	}
	return b.String()
}

func podOptions(subnet, i int) harness.PodOptions {
	return harness.PodOptions{Name: fmt.Sprintf("%s-%d", setName(subnet), i),
		Labels: map[string]string{setLabel: setName(subnet)}, IPv4: podIP(subnet, i)}
}

func readyEndpoints(slices []discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				n += len(ep.Addresses)
			}
		}
	}
	return n
}

// createPods creates pods, 8 at a time.
func createPods(ctx context.Context, cp *harness.ControlPlane, pods []harness.PodOptions) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	ch := make(chan harness.PodOptions)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range ch {
				if _, err := cp.CreateReadyPod(ctx, namespace, p); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, p := range pods {
		ch <- p
	}
	close(ch)
	wg.Wait()
	return first
}

// cacheAddr is cache c of cache style (1: NodeLocal-like, 2: kubeadm)
// in front of the given number of hdns replicas.
func cacheAddr(style, replicas, c int) string {
	return fmt.Sprintf("127.53.%d.%d", 10*(replicas-1)+style, c+1)
}

// corefile is one CoreDNS serving cluster.local with the kubernetes
// plugin on k8sAddr, and cfg.caches caches per style and replica count R,
// each a pair of blocks on its own address, from which it also forwards:
// lb.cluster.local to the first R hdns replicas (forward's default policy,
// random, as a CoreDNS whose forward lists several upstreams), cluster.local
// to the kubernetes plugin.
func corefile(cfg config, kubeconfig string, hs []*hdnsProc) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster.local:%s {\n    bind %s\n    kubernetes cluster.local {\n        kubeconfig %s\n        ttl %d\n    }\n}\n", dnsPort, k8sAddr, kubeconfig, cfg.ttl)
	for _, p := range paths {
		if p.style == 0 {
			continue
		}
		lb := ""
		if p.loadbalance {
			lb = "    loadbalance\n"
		}
		cache := fmt.Sprintf("    cache 30 {\n        success 9984 30 %d\n%s    }\n", cfg.ttl, cfg.prefetchLine())
		for _, r := range cfg.replicas {
			var upstreams []string
			for _, h := range hs[:r] {
				upstreams = append(upstreams, h.DNS)
			}
			for c := range cfg.caches {
				addr := cacheAddr(p.style, r, c)
				upstreams := upstreams
				if cfg.pinned {
					upstreams = upstreams[c%r : c%r+1]
				}
				fmt.Fprintf(&b, "lb.cluster.local:%s {\n    bind %s\n%s%s    forward . %s {\n        source_address %s\n    }\n}\n", dnsPort, addr, cache, lb, strings.Join(upstreams, " "), addr)
				fmt.Fprintf(&b, "cluster.local:%s {\n    bind %s\n%s%s    forward . %s:%s {\n        source_address %s\n    }\n}\n", dnsPort, addr, cache, lb, k8sAddr, dnsPort, addr)
			}
		}
	}
	return b.String()
}

// startCoreDNS runs CoreDNS with corefile and waits until the kubernetes
// plugin and every cache answer.
func startCoreDNS(t *testing.T, bin, corefile string, addrs []string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-conf", path)
	cmd.Dir = dir
	p := testproc.Start(t, "coredns", cmd)
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range addrs {
		for {
			// kubernetes.default is always there.
			_, err := lookupAll(a+":"+dnsPort, "kubernetes.default.svc.cluster.local.")
			if err == nil {
				break
			}
			if !p.Alive() || time.Now().After(deadline) {
				t.Fatalf("coredns at %s does not answer: %v\n%s", a, err, p.Tail(4000))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// combo is one running scenario of a slot.
type combo struct {
	spec
	// servers are the authoritative servers for direct: CoreDNS
	// kubernetes, or the scenario's hdns replicas.
	servers []string
	bk      *backends
	errs    atomic.Int64
	gai     *testproc.Proc
	t0      time.Duration // when the creation of its pod N+1 began
}

// runSlot runs every policy × client concurrently on path p and size n
// (index s), adds pod N+1 to each after the steady window, and returns the
// rows.
func runSlot(t *testing.T, cfg config, cp *harness.ControlPlane, hs []*hdnsProc, gaiBin string, p, s, n int) []result {
	path := paths[p]
	begin := time.Now()
	var combos []*combo
	for _, sp := range specs(cfg.replicas, p, s, n) {
		if cfg.only != nil && !slices.Contains(cfg.only, sp.policyKey) {
			continue
		}
		c := &combo{spec: sp, servers: []string{k8sAddr + ":" + dnsPort}}
		if sp.policyKey != "k8s" {
			c.servers = nil
			for _, h := range hs[:sp.replicas] {
				c.servers = append(c.servers, h.DNS)
			}
		}
		combos = append(combos, c)
	}
	total := cfg.warm + cfg.steady + cfg.tail
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for ci, c := range combos {
		c.bk = startBackends(t, c.subnet, n+1, begin)
		cfg.live.export(c.bk)
		// Each client asks one of servers: a direct client one replica, a
		// client behind a cache its node's cache.
		servers := c.servers
		if path.style != 0 {
			servers = nil
			for k := range cfg.caches {
				servers = append(servers, cacheAddr(path.style, c.replicas, k)+":"+dnsPort)
			}
		}
		switch c.client {
		case "go":
			for hst := range cfg.caches * cfg.goHostsPerCache {
				src := netip.AddrFrom4([4]byte{127, 1, byte(ci), byte(hst + 1)})
				wg.Add(1)
				go func() {
					defer wg.Done()
					goClient(ctx, src, servers[hst%len(servers)], c.fqdn, c.bk.port, cfg.goPause, &c.errs)
				}()
			}
		case "glibc":
			args := []string{c.fqdn, strconv.Itoa(c.bk.port), strconv.FormatInt(total.Milliseconds(), 10),
				strconv.FormatInt(cfg.gaiPause.Microseconds(), 10), strconv.Itoa(cfg.caches * cfg.glibcThreadsPerC)}
			args = append(args, servers...)
			c.gai = testproc.Start(t, "getaddrinfo "+c.fqdn, exec.Command(gaiBin, args...))
		}
	}

	// hdns's own count of first-place handouts per pod over the steady
	// window: a diagnostic beside the ground truth, never instead of it.
	time.Sleep(cfg.warm - time.Since(begin))
	before, errBefore := handouts(hs)
	time.Sleep(cfg.warm + cfg.steady - time.Since(begin))
	after, errAfter := handouts(hs)
	if err := errors.Join(errBefore, errAfter); err != nil {
		t.Logf("hdns handout metrics: %v", err)
	}

	// Scale-up: one more pod in each set after the steady window.
	var up sync.WaitGroup
	upErrs := make([]error, len(combos))
	for i, c := range combos {
		up.Add(1)
		go func() {
			defer up.Done()
			// The pod cannot be served before its creation starts.
			c.t0 = time.Since(begin)
			_, upErrs[i] = cp.CreateReadyPod(context.Background(), namespace, podOptions(c.subnet, n))
		}()
	}
	up.Wait()
	for _, err := range upErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(total - time.Since(begin))
	cancel()
	wg.Wait()
	for _, c := range combos {
		if c.gai == nil {
			continue
		}
		if err := c.gai.Wait(15 * time.Second); err != nil {
			t.Error(err)
		}
		e, err := glibcErrors(c.gai.Output())
		if err != nil {
			t.Errorf("getaddrinfo %s: %v", c.fqdn, err)
		}
		c.errs.Add(int64(e))
	}
	end := time.Since(begin)

	var rs []result
	for _, c := range combos {
		ev := c.bk.snapshot()
		steady := countsIn(ev, n, cfg.warm, cfg.warm+cfg.steady)
		desc := path.desc
		if c.replicas > 1 {
			desc += fmt.Sprintf(", %d hdns", c.replicas)
		}
		r := result{N: n, Path: desc, Client: c.client, Policy: c.policy,
			Steady: measure(steady), Counts: sortedDesc(steady), Errors: int(c.errs.Load()), Answers: -1}
		if strings.HasSuffix(c.policy, "first=1") && before != nil && after != nil {
			answers := make([]int, n)
			for i := range n {
				key := namespace + "/" + podOptions(c.subnet, i).Name
				answers[i] = int(after[c.service][key] - before[c.service][key])
			}
			r.Answers = measure(answers).MaxOverAvg
		}
		r.FirstConn = "never"
		for _, e := range ev {
			if e.backend == n {
				r.FirstConn = fmt.Sprintf("%.1f s", (e.at - c.t0).Seconds())
				break
			}
		}
		window := min(cfg.window, end-c.t0)
		if d, ok := convergence(ev, n+1, n, c.t0, end, window, 100*time.Millisecond); ok {
			r.Converge = fmt.Sprintf("%.1f s", d.Seconds())
		} else {
			r.Converge = "never"
		}
		last := countsIn(ev, n+1, end-window, end)
		sum := 0
		for _, x := range last {
			sum += x
		}
		if sum > 0 {
			r.ShareEnd = float64(last[n]) / (float64(sum) / float64(n+1))
		}
		rs = append(rs, r)
	}
	return rs
}
