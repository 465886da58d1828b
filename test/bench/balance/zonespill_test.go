//go:build bench

package balance

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
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
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/promtest"
)

// The spill-over experiment: a closed loop as loadsource's
// BenchmarkClosedLoop runs it, over pods in three zones of which one is
// slow, with clients in every zone.
const (
	spillPodsPerZone    = 2
	spillClientsPerZone = 4
	spillService        = 5 * time.Millisecond
	// spillSlowFactor is how many times slower the pods of zone-a are.
	spillSlowFactor = 3
	spillScrape     = time.Second
	// spillOpenRate is each client's request rate in the open loop, per
	// second: 4 clients offer a zone 180 requests/s, where zone-a's pods
	// serve 133/s and each other zone's 400/s.
	spillOpenRate = 45.0
	spillNS       = "spill"
)

// spillQueries are the load queries hdns can poll, by their
// HDNS_BENCH_SPILL_QUERY key. inflight smooths the scraped in-flight
// gauge over a few scrapes, as BenchmarkClosedLoop does: a measure of
// load, blind to how fast a pod serves. delay is a new request's expected
// wait at the pod, shortest-expected-delay's measure: the requests ahead
// of it and itself, each at the pod's mean busy time per request over
// 30 s (CPU seconds per request, for a CPU-bound service). It sees a slow
// pod as loaded even when it holds as many requests as a fast one, and
// keeps seeing it as slow while it is idle.
var spillQueries = map[string]string{
	"inflight": "avg_over_time(inflight[3s])",
	"delay":    "(avg_over_time(inflight[3s]) + 1) * rate(busy_seconds_total[30s]) / rate(served_total[30s])",
}

// spillTiming is how long each phase runs, its first warmup not
// measured, and how many rounds of every phase run.
type spillTiming struct {
	warmup, phase time.Duration
	rounds        int
	// query is the key of spillQueries hdns polls.
	query string
}

// spillTimingOf is the smoke run's timing or the full one, with
// HDNS_BENCH_SPILL_ROUNDS rounds when set (default 4: the verdict pools
// the rounds, see spillVerdict), polling the spillQueries entry that
// HDNS_BENCH_SPILL_QUERY names (default delay: the signal docs/topology.md
// recommends for pods of unequal speed).
func spillTimingOf(t *testing.T, smoke bool) spillTiming {
	tm := spillTiming{warmup: 3 * time.Second, phase: 13 * time.Second, rounds: 4}
	if smoke {
		tm = spillTiming{warmup: time.Second, phase: 4 * time.Second, rounds: 1}
	}
	if v := os.Getenv("HDNS_BENCH_SPILL_ROUNDS"); v != "" {
		r, err := strconv.Atoi(v)
		if err != nil || r < 1 || r > 12 {
			t.Fatalf("HDNS_BENCH_SPILL_ROUNDS=%q: want 1 to 12 rounds", v)
		}
		tm.rounds = r
	}
	tm.query = cmp.Or(os.Getenv("HDNS_BENCH_SPILL_QUERY"), "delay")
	if spillQueries[tm.query] == "" {
		t.Fatalf("HDNS_BENCH_SPILL_QUERY=%q: want inflight or delay", tm.query)
	}
	return tm
}

// spillLoads are how the clients load the pods: closed, each client
// sending its next request as soon as the previous one is answered (the
// load of a zone is bounded by its clients: a slow zone is never
// overloaded, its clients only wait longer), or open, Poisson arrivals at
// spillOpenRate per client whatever the answers take (a slow zone that
// keeps its clients' requests falls behind without bound).
var spillLoads = []struct {
	key  string
	rate float64 // requests per second per client; 0: closed loop
}{
	{key: "closed"},
	{key: "open", rate: spillOpenRate},
}

func spillLoadDesc(l int) string {
	if spillLoads[l].rate == 0 {
		return "closed"
	}
	return fmt.Sprintf("open, %.0f/s per zone", spillLoads[l].rate*spillClientsPerZone)
}

// spillPolicies are the phases of one round: hdns policies, each its own
// Service over its own pods, and ideal-jsq (policy ""), which sends each
// request to the pod with the fewest in flight, read directly, whatever
// its zone.
var spillPolicies = []struct{ key, policy string }{
	{key: "blind", policy: "least-loaded, first=1"},
	{key: "pz", policy: "prefer-zone, least-loaded, first=1"},
	{key: "pz-over025", policy: "prefer-zone=over:0.25, least-loaded, first=1"},
	{key: "pz-strict", policy: "prefer-zone=over:1000, least-loaded, first=1"},
	{key: "jsq", policy: ""},
}

// spillBackend is one pod: a single worker serving requests in turn, each
// taking service; inflight counts requests queued or being served, busy
// the worker's time serving them and served those it finished, and
// /metrics exposes them for Prometheus.
type spillBackend struct {
	pod      string
	zone     int
	addr     netip.Addr
	service  time.Duration
	worker   sync.Mutex
	inflight atomic.Int64
	busy     atomic.Int64 // nanoseconds
	served   atomic.Int64
}

func (b *spillBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		labels := fmt.Sprintf("{namespace=%q,pod=%q}", spillNS, b.pod)
		fmt.Fprintf(w, "# TYPE inflight gauge\ninflight%s %d\n# TYPE busy_seconds_total counter\nbusy_seconds_total%s %g\n# TYPE served_total counter\nserved_total%s %d\n",
			labels, b.inflight.Load(), labels, time.Duration(b.busy.Load()).Seconds(), labels, b.served.Load())
		return
	}
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	b.worker.Lock()
	start := time.Now()
	time.Sleep(b.service)
	b.busy.Add(int64(time.Since(start)))
	b.served.Add(1)
	b.worker.Unlock()
}

// spillSet is one phase's pods, all listening on port.
type spillSet struct {
	round, load, policy int
	service             string
	port                int
	pods                []*spillBackend
}

func spillNodeAddr(z int) string { return fmt.Sprintf("127.54.2.%d", z+1) }
func spillPodCIDR(z int) string  { return fmt.Sprintf("127.57.%d.0/24", z) }
func spillClientAddr(z, c int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 57, byte(z), byte(c + 1)})
}

// startSpillSet starts phase (round r, load l, policy p)'s pods:
// spillPodsPerZone per zone on 127.58.<phase>.x, zone-a's spillSlowFactor
// times slower.
func startSpillSet(t *testing.T, r, l, p int) *spillSet {
	t.Helper()
	phase := (r*len(spillLoads)+l)*len(spillPolicies) + p
	s := &spillSet{round: r, load: l, policy: p, service: fmt.Sprintf("%s-%s-r%d", spillPolicies[p].key, spillLoads[l].key, r)}
	for i := range zoneCount * spillPodsPerZone {
		b := &spillBackend{pod: fmt.Sprintf("%s-%d", s.service, i), zone: i / spillPodsPerZone,
			addr: netip.AddrFrom4([4]byte{127, 58, byte(phase), byte(i + 1)}), service: spillService}
		if b.zone == 0 {
			b.service *= spillSlowFactor
		}
		l, err := net.Listen("tcp", netip.AddrPortFrom(b.addr, uint16(s.port)).String())
		if err != nil {
			t.Fatalf("pod %s: %v", b.pod, err)
		}
		s.port = l.Addr().(*net.TCPAddr).Port
		srv := &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		s.pods = append(s.pods, b)
	}
	return s
}

// spillManifest is the Nodes (one per zone, its address and podCIDR) and
// each hdns phase's Service and EndpointSlice, each endpoint with its
// node and zone, as --manifests reads them.
func spillManifest(t *testing.T, sets []*spillSet) string {
	t.Helper()
	var objs []runtime.Object
	for z := range zoneCount {
		objs = append(objs, fixture.Node{Name: zoneNodeName(z),
			Labels:     map[string]string{corev1.LabelTopologyZone: zoneNames[z], corev1.LabelTopologyRegion: "region-1"},
			InternalIP: spillNodeAddr(z), PodCIDRs: []string{spillPodCIDR(z)}}.API())
	}
	for _, s := range sets {
		pol := spillPolicies[s.policy].policy
		if pol == "" {
			continue
		}
		objs = append(objs, fixture.Service{Namespace: spillNS, Name: s.service, Headless: true,
			Annotations: map[string]string{policyAnno: pol}}.API())
		sl := fixture.EndpointSlice{Namespace: spillNS, Name: s.service + "-1", Service: s.service}
		for _, b := range s.pods {
			sl.Endpoints = append(sl.Endpoints, fixture.Endpoint{Address: b.addr.String(), Pod: b.pod,
				NodeName: zoneNodeName(b.zone), Zone: zoneNames[b.zone]})
		}
		objs = append(objs, sl.API())
	}
	return fixture.YAML(t, objs...)
}

// spillResult is one phase's row.
type spillResult struct {
	round          int
	load           int
	policy         string
	requests       int
	p50, p99       time.Duration
	p99Slow        time.Duration // of the slow zone's clients
	p99Fast        time.Duration // of the other zones' clients
	inZone         float64       // share of requests to a pod in the client's zone
	slowShare      float64       // share of requests served by the slow zone
	slowClientsOut float64       // share of the slow zone's clients' requests sent out of it
	deepQueue      float64       // share of requests over spillDeepQueue
	errors         int64
	samples        []spillSample
}

// spillDeepQueue is a latency only a request that waited behind two or
// more others at a slow pod exceeds. In the closed loop the latencies
// cluster at whole slow service times (one, two, three requests ahead of
// it at a slow pod), so a p99 lands on one of these steps, and which one
// turns on how often three requests meet at one slow pod: the share over
// spillDeepQueue says how often.
const spillDeepQueue = spillService * spillSlowFactor * 5 / 2

// TestBalanceZoneSpill is the closed loop with live load from a real
// Prometheus (loadsource's BenchmarkClosedLoop) over pods in three zones,
// zone-a's pods spillSlowFactor times slower: does prefer-zone's
// spill-over keep the p99 at or below zone-blind least-loaded's? A real
// hdns reads Nodes (zone, address, podCIDR), Services and EndpointSlices
// from --manifests and polls Prometheus every 500 ms; spillClientsPerZone
// clients per zone ask it from their own address in their zone's podCIDR
// with Go's resolver and send one request to the first address, under
// each of spillLoads: again as soon as it is answered (closed), or at a
// fixed rate that overloads zone-a if it serves its own clients alone
// (open). Each policy and load is a phase with its own Service over its
// own pods, run one after the other, four rounds (HDNS_BENCH_SPILL_ROUNDS),
// the order rotated by one phase each round, so that each policy runs
// at each position, after a discarded warm-up phase. Opt-in:
// HDNS_BENCH_ONLY=zone (with HDNS_BENCH_SMOKE, one short round).
func TestBalanceZoneSpill(t *testing.T) {
	cfg := benchConfig(t)
	if !slices.Contains(cfg.only, zoneKey) {
		t.Skip("opt-in: HDNS_BENCH_ONLY=" + zoneKey)
	}
	tm := spillTimingOf(t, os.Getenv("HDNS_BENCH_SMOKE") != "" || testing.Short())
	hdnsBin := hdnsBinary(t)
	var sets []*spillSet
	var targets []string
	for r := range tm.rounds {
		for l := range spillLoads {
			for p := range spillPolicies {
				s := startSpillSet(t, r, l, p)
				sets = append(sets, s)
				for _, b := range s.pods {
					targets = append(targets, netip.AddrPortFrom(b.addr, uint16(s.port)).String())
				}
			}
		}
	}
	// The warm-up phase runs first and is not reported: the first phase
	// after hdns and Prometheus start would otherwise always be the same
	// policy's, on a process and a TSDB that have served nothing yet.
	warm := startSpillSet(t, tm.rounds, 0, 0)
	sets = append(sets, warm)
	for _, b := range warm.pods {
		targets = append(targets, netip.AddrPortFrom(b.addr, uint16(warm.port)).String())
	}
	prom := promtest.Start(t, spillScrape, targets...)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spill.yaml"), []byte(spillManifest(t, sets)), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHDNS(t, hdnsBin, "--manifests", dir, "--ttl", "1s", "--prometheus-url", prom.URL,
		"--load-query", spillQueries[tm.query], "--load-interval", "500ms")
	for z := range zoneCount {
		name := sets[0].service + "." + spillNS + ".svc.cluster.local."
		if zone, by, err := h.locate(name, spillClientAddr(z, 0).String()); err != nil || zone != zoneNames[z] {
			t.Fatalf("hdns places client %s in zone %q (by %s, error %v), want %s", spillClientAddr(z, 0), zone, by, err, zoneNames[z])
		}
	}

	runSpillPhase(t, tm, h, warm)
	var rs []spillResult
	per := len(spillPolicies)
	for r := range tm.rounds {
		for l := range spillLoads {
			first := (r*len(spillLoads) + l) * per
			order := make([]*spillSet, per)
			for i := range order {
				order[i] = sets[first+(i+r)%per]
			}
			rs = append(rs, runSpillPhases(t, tm, h, order)...)
		}
	}
	report := fmt.Sprintf("\n# hdns zone spill-over under live load\n\n%s\n\n%s\n%s\n%s", spillModel(tm), spillTable(rs), spillPooledTable(rs), spillVerdict(rs))
	t.Logf("\n%s", report)
	appendReport(t, report)
}

// runSpillPhases runs the phases sets one after the other.
func runSpillPhases(t *testing.T, tm spillTiming, h *hdnsProc, sets []*spillSet) []spillResult {
	var rs []spillResult
	for _, s := range sets {
		res := runSpillPhase(t, tm, h, s)
		t.Logf("round %d %s %-46s requests %6d p50 %6.2f ms p99 %6.2f ms (slow zone's clients %6.2f, others %6.2f) in zone %5.1f%% slow zone serves %5.1f%% errors %d",
			res.round+1, spillLoadDesc(res.load), res.policy, res.requests, ms(res.p50), ms(res.p99), ms(res.p99Slow), ms(res.p99Fast), 100*res.inZone, 100*res.slowShare, res.errors)
		rs = append(rs, res)
	}
	return rs
}

// spillSample is one measured request: its latency, the client's zone and
// the zone of the pod that served it.
type spillSample struct {
	lat              time.Duration
	clientZone, zone int
}

// runSpillPhase runs phase s's load against its pods and returns its row.
// A request counts when it is sent within the measured window, however
// late it is answered.
func runSpillPhase(t *testing.T, tm spillTiming, h *hdnsProc, s *spillSet) spillResult {
	fqdn := s.service + "." + spillNS + ".svc.cluster.local."
	zoneOf := map[netip.Addr]int{}
	for _, b := range s.pods {
		zoneOf[b.addr] = b.zone
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	defer httpClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), tm.phase)
	defer cancel()
	measureFrom := time.Now().Add(tm.warmup)
	var (
		mu      sync.Mutex
		samples []spillSample
		errs    atomic.Int64
		wg      sync.WaitGroup
	)
	// request sends one request of a client of zone z, asking r.
	request := func(z int, r *net.Resolver) {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		addr, err := spillPick(rctx, r, fqdn, s)
		if err != nil {
			errs.Add(1)
			return
		}
		start := time.Now()
		resp, err := httpClient.Get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(addr, uint16(s.port))))
		if err != nil {
			errs.Add(1)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if start.Before(measureFrom) {
			return
		}
		mu.Lock()
		samples = append(samples, spillSample{lat: time.Since(start), clientZone: z, zone: zoneOf[addr]})
		mu.Unlock()
	}
	rate := spillLoads[s.load].rate
	for z := range zoneCount {
		for c := range spillClientsPerZone {
			src := &net.UDPAddr{IP: spillClientAddr(z, c).AsSlice()}
			r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				d := net.Dialer{LocalAddr: src}
				return d.DialContext(ctx, "udp", h.DNS)
			}}
			wg.Go(func() {
				for ctx.Err() == nil {
					if rate == 0 {
						request(z, r)
						continue
					}
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(rand.ExpFloat64() / rate * float64(time.Second))):
						wg.Go(func() { request(z, r) })
					}
				}
			})
		}
	}
	wg.Wait()
	if len(samples) == 0 {
		t.Fatalf("%s: no request completed (%d errors)", s.service, errs.Load())
	}
	res := spillSummary(samples)
	res.round, res.load, res.errors, res.samples = s.round, s.load, errs.Load(), samples
	res.policy = spillPolicies[s.policy].policy
	if res.policy == "" {
		res.policy = "ideal-jsq (zone-blind, in-flight read directly)"
	}
	return res
}

// spillSummary is the latency quantiles and zone shares of samples.
func spillSummary(samples []spillSample) spillResult {
	var res spillResult
	var all, slow, fast []time.Duration
	var inZone, slowServed, slowClients, slowOut, deep int
	for _, x := range samples {
		all = append(all, x.lat)
		if x.lat > spillDeepQueue {
			deep++
		}
		if x.clientZone == 0 {
			slow, slowClients = append(slow, x.lat), slowClients+1
			if x.zone != 0 {
				slowOut++
			}
		} else {
			fast = append(fast, x.lat)
		}
		if x.zone == x.clientZone {
			inZone++
		}
		if x.zone == 0 {
			slowServed++
		}
	}
	res.requests = len(samples)
	res.p50, res.p99 = quantile(all, 0.5), quantile(all, 0.99)
	res.p99Slow, res.p99Fast = quantile(slow, 0.99), quantile(fast, 0.99)
	res.inZone = float64(inZone) / float64(len(samples))
	res.slowShare = float64(slowServed) / float64(len(samples))
	res.slowClientsOut = float64(slowOut) / float64(max(slowClients, 1))
	res.deepQueue = float64(deep) / float64(len(samples))
	return res
}

// spillPick is where one request of phase s goes: the first address of
// hdns's answer, or for ideal-jsq the pod with the fewest in flight.
func spillPick(ctx context.Context, r *net.Resolver, fqdn string, s *spillSet) (netip.Addr, error) {
	if spillPolicies[s.policy].policy == "" {
		best := s.pods[0]
		for _, b := range s.pods[1:] {
			if b.inflight.Load() < best.inflight.Load() {
				best = b
			}
		}
		return best.addr, nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip4", fqdn)
	if err != nil {
		return netip.Addr{}, err
	}
	return addrs[0], nil
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// spillBlind is the zone-blind least-loaded p99 of each round and load.
func spillBlind(rs []spillResult) map[[2]int]time.Duration {
	blind := map[[2]int]time.Duration{}
	for _, r := range rs {
		if r.policy == spillPolicies[0].policy {
			blind[[2]int{r.round, r.load}] = r.p99
		}
	}
	return blind
}

func spillTable(rs []spillResult) string {
	blind := spillBlind(rs)
	var b strings.Builder
	b.WriteString("| round | load | policy | requests | p50 ms | p99 ms | p99 ÷ zone-blind | p99 ms, slow zone's clients / others | over " + fmt.Sprint(spillDeepQueue) + " | in client's zone | served by the slow zone | slow zone's requests sent out | errors |\n")
	b.WriteString("|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %s | %s | %d | %.2f | %.2f | %.2f | %.2f / %.2f | %.2f%% | %.1f%% | %.1f%% | %.1f%% | %d |\n",
			r.round+1, spillLoadDesc(r.load), r.policy, r.requests, ms(r.p50), ms(r.p99), float64(r.p99)/float64(blind[[2]int{r.round, r.load}]),
			ms(r.p99Slow), ms(r.p99Fast), 100*r.deepQueue, 100*r.inZone, 100*r.slowShare, 100*r.slowClientsOut, r.errors)
	}
	return b.String()
}

// spillPooled is the row of policy under load l over rounds (every
// round when nil; a round listed twice counts twice): the samples of
// those rounds together, each round's window as long.
func spillPooled(rs []spillResult, policy string, l int, rounds []int) spillResult {
	if rounds == nil {
		for r := range spillRounds(rs) {
			rounds = append(rounds, r)
		}
	}
	var samples []spillSample
	for _, round := range rounds {
		for _, r := range rs {
			if r.policy == policy && r.load == l && r.round == round {
				samples = append(samples, r.samples...)
			}
		}
	}
	if len(samples) == 0 {
		return spillResult{policy: policy, load: l}
	}
	res := spillSummary(samples)
	res.policy, res.load = policy, l
	return res
}

// spillRounds is the number of rounds in rs.
func spillRounds(rs []spillResult) int {
	n := 0
	for _, r := range rs {
		n = max(n, r.round+1)
	}
	return n
}

// spillPolicyNames is the policies of rs in their order.
func spillPolicyNames(rs []spillResult) []string {
	var names []string
	for _, r := range rs {
		if !slices.Contains(names, r.policy) {
			names = append(names, r.policy)
		}
	}
	return names
}

// spillPooledTable is every policy's row over all rounds pooled.
func spillPooledTable(rs []spillResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nAll %d rounds pooled:\n\n", spillRounds(rs))
	b.WriteString("| load | policy | requests | p50 ms | p99 ms | p99 ÷ zone-blind | p99 ms, slow zone's clients / others | over " +
		fmt.Sprint(spillDeepQueue) + " | in client's zone | slow zone's requests sent out |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---|---:|---:|---:|\n")
	for l := range spillLoads {
		blind := spillPooled(rs, spillPolicies[0].policy, l, nil)
		for _, name := range spillPolicyNames(rs) {
			r := spillPooled(rs, name, l, nil)
			fmt.Fprintf(&b, "| %s | %s | %d | %.2f | %.2f | %.2f | %.2f / %.2f | %.2f%% | %.1f%% | %.1f%% |\n",
				spillLoadDesc(l), name, r.requests, ms(r.p50), ms(r.p99), float64(r.p99)/float64(blind.p99),
				ms(r.p99Slow), ms(r.p99Fast), 100*r.deepQueue, 100*r.inZone, 100*r.slowClientsOut)
		}
	}
	return b.String()
}

// spillInterval is the 5th and 95th percentiles of the pooled p99 ratio
// of policy to zone-blind under load l, the rounds resampled with
// replacement (both policies' rows of a drawn round together: a paired
// bootstrap over rounds, which are the experiment's independent repeats).
func spillInterval(rs []spillResult, policy string, l int) (lo, hi float64) {
	n := spillRounds(rs)
	rng := rand.New(rand.NewPCG(1, 2))
	var ratios []float64
	for range 200 {
		rounds := make([]int, n)
		for i := range rounds {
			rounds[i] = rng.IntN(n)
		}
		p := spillPooled(rs, policy, l, rounds)
		blind := spillPooled(rs, spillPolicies[0].policy, l, rounds)
		ratios = append(ratios, float64(p.p99)/float64(blind.p99))
	}
	slices.Sort(ratios)
	return ratios[len(ratios)*5/100], ratios[len(ratios)*95/100]
}

// spillVerdict states the target: prefer-zone's p99 at or below the
// zone-blind least-loaded p99 under the same load, each over all rounds
// pooled. The rounds are repeats of one experiment, and a round's p99 of
// the closed loop sits on one of the steps of its latencies (see
// spillDeepQueue): which step moves from round to round for every policy
// alike, so a round's ratio says more about the round than the policy.
// Each round's ratio is listed too, with the pooled ratio's interval over
// resampled rounds.
func spillVerdict(rs []spillResult) string {
	var b strings.Builder
	b.WriteString("\nTarget: prefer-zone p99 ≤ least-loaded, first=1 (zone-blind) p99 under the same load, all rounds pooled:\n")
	blindPer := spillBlind(rs)
	for l := range spillLoads {
		blind := spillPooled(rs, spillPolicies[0].policy, l, nil)
		for _, name := range spillPolicyNames(rs) {
			if !strings.HasPrefix(name, "prefer-zone") {
				continue
			}
			p := spillPooled(rs, name, l, nil)
			mark := "meets"
			if p.p99 > blind.p99 {
				mark = "MISSES"
			}
			var per []string
			met := 0
			for _, r := range rs {
				if r.policy == name && r.load == l {
					ratio := float64(r.p99) / float64(blindPer[[2]int{r.round, l}])
					per = append(per, fmt.Sprintf("%.2f", ratio))
					if ratio <= 1 {
						met++
					}
				}
			}
			lo, hi := spillInterval(rs, name, l)
			fmt.Fprintf(&b, "- %s, %s: %.2f ms against %.2f ms (%.2f×; rounds resampled, 90%%: %.2f–%.2f×): %s; per round %s (%d of %d at or below)\n",
				spillLoadDesc(l), name, ms(p.p99), ms(blind.p99), float64(p.p99)/float64(blind.p99), lo, hi, mark, strings.Join(per, " / "), met, len(per))
		}
	}
	return b.String()
}

func spillModel(tm spillTiming) string {
	return fmt.Sprintf(`Model. loadsource's BenchmarkClosedLoop over three zones: %d pods per zone, one worker each, %v per request
in zone-b and zone-c, %v in zone-a (zone-a's capacity is 1/%d of each other zone's). One Node per zone (zone label, loopback
InternalIP, podCIDR 127.57.z.0/24) and one headless Service per phase over its own pods, each endpoint with its node and
zone, read by hdns from --manifests. %d clients per zone, each resolving with Go's resolver from its own address in its
zone's podCIDR, then sending one HTTP request to the first address. closed: each client again as soon as its request is
answered (no pause); open: each client at Poisson arrivals, %.0f/s, whatever the answers take. A real Prometheus scrapes
the pods' in-flight gauges, busy seconds and finished requests every %v; hdns polls %q every 500 ms; TTL 1 s. Each phase runs %v, the requests sent in the
first %v not measured, one after the other, after a warm-up phase not reported; %d round(s), the order rotated by one
phase each round; latency is the HTTP request's, the
lookup before it left out. ideal-jsq sends each request to the pod with the fewest in flight, read directly, whatever its
zone. prefer-zone spills over when the mean load score of the client's zone's pods exceeds (1+F) times the others' (F = 1
by default; over:1000 never spills here).`,
		spillPodsPerZone, spillService, spillService*spillSlowFactor, spillSlowFactor, spillClientsPerZone, spillOpenRate,
		spillScrape, spillQueries[tm.query], tm.phase, tm.warmup, tm.rounds)
}
