//go:build bench

package balance

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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
	// spillQuery smooths the scraped in-flight gauge over a few scrapes,
	// as BenchmarkClosedLoop does.
	spillQuery = "avg_over_time(inflight[3s])"
	spillNS    = "spill"
)

// spillTiming is how long each phase runs, its first warmup not
// measured, and how many rounds of every phase run.
type spillTiming struct {
	warmup, phase time.Duration
	rounds        int
}

func spillTimingOf(smoke bool) spillTiming {
	if smoke {
		return spillTiming{warmup: time.Second, phase: 4 * time.Second, rounds: 1}
	}
	return spillTiming{warmup: 3 * time.Second, phase: 13 * time.Second, rounds: 2}
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
// taking service; inflight counts requests queued or being served, and
// /metrics exposes it for Prometheus.
type spillBackend struct {
	pod      string
	zone     int
	addr     netip.Addr
	service  time.Duration
	worker   sync.Mutex
	inflight atomic.Int64
}

func (b *spillBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		fmt.Fprintf(w, "# TYPE inflight gauge\ninflight{namespace=%q,pod=%q} %d\n", spillNS, b.pod, b.inflight.Load())
		return
	}
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	b.worker.Lock()
	time.Sleep(b.service)
	b.worker.Unlock()
}

// spillSet is one phase's pods, all listening on port.
type spillSet struct {
	round, policy int
	service       string
	port          int
	pods          []*spillBackend
}

func spillNodeAddr(z int) string { return fmt.Sprintf("127.54.2.%d", z+1) }
func spillPodCIDR(z int) string  { return fmt.Sprintf("127.57.%d.0/24", z) }
func spillClientAddr(z, c int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 57, byte(z), byte(c + 1)})
}

// startSpillSet starts phase (round r, policy p)'s pods: spillPodsPerZone
// per zone on 127.58.<phase>.x, zone-a's spillSlowFactor times slower.
func startSpillSet(t *testing.T, r, p int) *spillSet {
	t.Helper()
	phase := r*len(spillPolicies) + p
	s := &spillSet{round: r, policy: p, service: fmt.Sprintf("%s-r%d", spillPolicies[p].key, r)}
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
	policy         string
	requests       int
	p50, p99       time.Duration
	p99Slow        time.Duration // of the slow zone's clients
	p99Fast        time.Duration // of the other zones' clients
	inZone         float64       // share of requests to a pod in the client's zone
	slowShare      float64       // share of requests served by the slow zone
	slowClientsOut float64       // share of the slow zone's clients' requests sent out of it
	errors         int64
}

// TestBalanceZoneSpill is the closed loop with live load from a real
// Prometheus (loadsource's BenchmarkClosedLoop) over pods in three zones,
// zone-a's pods spillSlowFactor times slower: does prefer-zone's
// spill-over keep the p99 at or below zone-blind least-loaded's? A real
// hdns reads Nodes (zone, address, podCIDR), Services and EndpointSlices
// from --manifests and polls Prometheus every 500 ms; spillClientsPerZone
// clients per zone ask it from their own address in their zone's podCIDR
// with Go's resolver and send one request to the first address, again as
// soon as it is answered. Each policy is a phase with its own Service
// over its own pods, run one after the other, two rounds, the second in
// reverse order. Opt-in: HDNS_BENCH_ONLY=zone (with HDNS_BENCH_SMOKE, one
// short round).
func TestBalanceZoneSpill(t *testing.T) {
	cfg := benchConfig(t)
	if !slices.Contains(cfg.only, zoneKey) {
		t.Skip("opt-in: HDNS_BENCH_ONLY=" + zoneKey)
	}
	tm := spillTimingOf(os.Getenv("HDNS_BENCH_SMOKE") != "" || testing.Short())
	hdnsBin := hdnsBinary(t)
	var sets []*spillSet
	var targets []string
	for r := range tm.rounds {
		for p := range spillPolicies {
			s := startSpillSet(t, r, p)
			sets = append(sets, s)
			for _, b := range s.pods {
				targets = append(targets, netip.AddrPortFrom(b.addr, uint16(s.port)).String())
			}
		}
	}
	prom := promtest.Start(t, spillScrape, targets...)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spill.yaml"), []byte(spillManifest(t, sets)), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startHDNS(t, hdnsBin, "--manifests", dir, "--ttl", "1s", "--prometheus-url", prom.URL,
		"--load-query", spillQuery, "--load-interval", "500ms")
	for z := range zoneCount {
		name := sets[0].service + "." + spillNS + ".svc.cluster.local."
		if zone, by, err := h.locate(name, spillClientAddr(z, 0).String()); err != nil || zone != zoneNames[z] {
			t.Fatalf("hdns places client %s in zone %q (by %s, error %v), want %s", spillClientAddr(z, 0), zone, by, err, zoneNames[z])
		}
	}

	var rs []spillResult
	for r := range tm.rounds {
		order := slices.Clone(sets[r*len(spillPolicies) : (r+1)*len(spillPolicies)])
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			res := runSpillPhase(t, tm, h, s)
			t.Logf("round %d %-46s requests %6d p50 %6.2f ms p99 %6.2f ms (slow zone's clients %6.2f, others %6.2f) in zone %5.1f%% slow zone serves %5.1f%% errors %d",
				r+1, res.policy, res.requests, ms(res.p50), ms(res.p99), ms(res.p99Slow), ms(res.p99Fast), 100*res.inZone, 100*res.slowShare, res.errors)
			rs = append(rs, res)
		}
	}
	report := fmt.Sprintf("\n# hdns zone spill-over under live load\n\n%s\n\n%s\n%s", spillModel(tm), spillTable(rs), spillVerdict(rs))
	t.Logf("\n%s", report)
	appendReport(t, report)
}

// runSpillPhase runs the closed loop against phase s and returns its row.
func runSpillPhase(t *testing.T, tm spillTiming, h *hdnsProc, s *spillSet) spillResult {
	pol := spillPolicies[s.policy]
	res := spillResult{round: s.round, policy: pol.policy}
	if pol.policy == "" {
		res.policy = "ideal-jsq (zone-blind, in-flight read directly)"
	}
	fqdn := s.service + "." + spillNS + ".svc.cluster.local."
	zoneOf := map[netip.Addr]int{}
	for _, b := range s.pods {
		zoneOf[b.addr] = b.zone
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: zoneCount * spillClientsPerZone}, Timeout: 10 * time.Second}
	defer httpClient.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), tm.phase)
	defer cancel()
	measureFrom := time.Now().Add(tm.warmup)
	type sample struct {
		lat              time.Duration
		clientZone, zone int
	}
	var (
		mu      sync.Mutex
		samples []sample
		errs    atomic.Int64
		wg      sync.WaitGroup
	)
	for z := range zoneCount {
		for c := range spillClientsPerZone {
			src := &net.UDPAddr{IP: spillClientAddr(z, c).AsSlice()}
			res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				d := net.Dialer{LocalAddr: src}
				return d.DialContext(ctx, "udp", h.DNS)
			}}
			wg.Go(func() {
				for ctx.Err() == nil {
					addr, err := spillPick(ctx, res, fqdn, s)
					if err != nil {
						if ctx.Err() == nil {
							errs.Add(1)
						}
						continue
					}
					start := time.Now()
					resp, err := httpClient.Get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(addr, uint16(s.port))))
					if err != nil {
						if ctx.Err() == nil {
							errs.Add(1)
						}
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if start.Before(measureFrom) || ctx.Err() != nil {
						continue
					}
					mu.Lock()
					samples = append(samples, sample{lat: time.Since(start), clientZone: z, zone: zoneOf[addr]})
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(samples) == 0 {
		t.Fatalf("%s: no request completed (%d errors)", s.service, errs.Load())
	}
	var all, slow, fast []time.Duration
	var inZone, slowServed, slowClients, slowOut int
	for _, x := range samples {
		all = append(all, x.lat)
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
	res.requests, res.errors = len(samples), errs.Load()
	res.p50, res.p99 = quantile(all, 0.5), quantile(all, 0.99)
	res.p99Slow, res.p99Fast = quantile(slow, 0.99), quantile(fast, 0.99)
	res.inZone = float64(inZone) / float64(len(samples))
	res.slowShare = float64(slowServed) / float64(len(samples))
	res.slowClientsOut = float64(slowOut) / float64(max(slowClients, 1))
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

func spillTable(rs []spillResult) string {
	blind := map[int]time.Duration{}
	for _, r := range rs {
		if r.policy == spillPolicies[0].policy {
			blind[r.round] = r.p99
		}
	}
	var b strings.Builder
	b.WriteString("| round | policy | requests | p50 ms | p99 ms | p99 ÷ zone-blind | p99 ms, slow zone's clients / others | in client's zone | served by the slow zone | slow zone's requests sent out | errors |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %s | %d | %.2f | %.2f | %.2f | %.2f / %.2f | %.1f%% | %.1f%% | %.1f%% | %d |\n",
			r.round+1, r.policy, r.requests, ms(r.p50), ms(r.p99), float64(r.p99)/float64(blind[r.round]),
			ms(r.p99Slow), ms(r.p99Fast), 100*r.inZone, 100*r.slowShare, 100*r.slowClientsOut, r.errors)
	}
	return b.String()
}

// spillVerdict states the target: prefer-zone's p99 (default spill-over)
// at or below the zone-blind least-loaded p99 of the same round.
func spillVerdict(rs []spillResult) string {
	var b strings.Builder
	b.WriteString("\nTarget: prefer-zone, least-loaded, first=1 p99 ≤ least-loaded, first=1 (zone-blind) p99 in the same round:\n")
	blind := map[int]time.Duration{}
	for _, r := range rs {
		if r.policy == spillPolicies[0].policy {
			blind[r.round] = r.p99
		}
	}
	for _, r := range rs {
		if !strings.HasPrefix(r.policy, "prefer-zone") {
			continue
		}
		mark := "meets"
		if r.p99 > blind[r.round] {
			mark = "MISSES"
		}
		fmt.Fprintf(&b, "- round %d, %s: %.2f ms against %.2f ms: %s\n", r.round+1, r.policy, ms(r.p99), ms(blind[r.round]), mark)
	}
	return b.String()
}

func spillModel(tm spillTiming) string {
	return fmt.Sprintf(`Model. The closed loop of loadsource's BenchmarkClosedLoop over three zones: %d pods per zone, one worker each,
%v per request in zone-b and zone-c, %v in zone-a (zone-a's capacity is 1/%d of each other zone's). One Node per zone
(zone label, loopback InternalIP, podCIDR 127.57.z.0/24) and one headless Service per phase over its own pods, each endpoint
with its node and zone, read by hdns from --manifests. %d clients per zone, each resolving with Go's resolver from its own
address in its zone's podCIDR, then sending one HTTP request to the first address, again as soon as it is answered (no
pause). A real Prometheus scrapes the pods' in-flight gauges every %v; hdns polls %q every 500 ms; TTL 1 s. Each phase
runs %v, the first %v not measured, one after the other; %d round(s), the second in reverse order. ideal-jsq sends each
request to the pod with the fewest in flight, read directly, whatever its zone. prefer-zone spills over when the mean
load score of the client's zone's pods exceeds (1+F) times the others' (F = 1 by default; over:1000 never spills here).`,
		spillPodsPerZone, spillService, spillService*spillSlowFactor, spillSlowFactor, spillClientsPerZone, spillScrape, spillQuery,
		tm.phase, tm.warmup, tm.rounds)
}
