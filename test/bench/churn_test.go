//go:build bench

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/hdns-dev/hdns/internal/testproc"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// Churn: TestPropagation times one change at a time in a Service of 3
// pods; TestChurn times changes made at a steady rate (10, 100 and 500
// per second) among 10k, 100k and 200k endpoints, for hdns and CoreDNS
// watching the same control plane, with each server's CPU, memory and GC
// pauses meanwhile.
//
// The writer flips endpoints' Ready and Serving conditions in
// EndpointSlices it writes itself (headless Services without selectors,
// fixture_test.go), not through pods: hdns and CoreDNS both read slices,
// so the slice write is the change they see either way, and pods would
// put the EndpointSlice controller's CPU and batching on the same two
// cores as the servers while 200k pods would take the control plane an
// hour to create.

// Environment variables of TestChurn and TestManifestEdit.
const (
	// ChurnScalesEnv overrides the churn test's endpoint counts,
	// comma-separated, increasing (default 10000,100000,200000).
	ChurnScalesEnv = "HDNS_BENCH_CHURN_SCALES"
	// ChurnRatesEnv overrides the changes per second, comma-separated
	// (default 10,100,500).
	ChurnRatesEnv = "HDNS_BENCH_CHURN_RATES"
	// ChurnDurationEnv overrides how long each rate runs (default 60s).
	ChurnDurationEnv = "HDNS_BENCH_CHURN_DURATION"
	// ChurnProbesEnv overrides how many changes per second, at most, are
	// timed to the changed answer (default 10).
	ChurnProbesEnv = "HDNS_BENCH_CHURN_PROBES"
	// ManifestEndpointsEnv overrides the manifests test's endpoint count
	// (default 200000, 100 per file).
	ManifestEndpointsEnv = "HDNS_BENCH_MANIFEST_ENDPOINTS"
	// ManifestEditsEnv overrides the number of one-file edits (default 20).
	ManifestEditsEnv = "HDNS_BENCH_MANIFEST_EDITS"
)

const (
	// churnWorkers bounds the writes in flight; each worker owns the
	// slices whose index is its own modulo churnWorkers, so no two writes
	// of one slice race.
	churnWorkers = 32
	// churnQueue is each worker's backlog; a change that finds it full is
	// dropped and counted, so a saturated API server shows as a lower rate
	// done, not as a growing queue.
	churnQueue = 4
	// probeTimeout bounds one timed change's wait for both servers.
	probeTimeout = 10 * time.Second
)

// churnSizes is the endpoint count of consecutive Services, repeated, one
// cycle per namespace: mostly 10–100 endpoints, one Service of 1,000 in
// 40 (mean 66.5 endpoints per Service).
var churnSizes = []int{
	10, 10, 10, 10, 10, 20, 20, 20, 20, 20,
	20, 30, 30, 30, 30, 40, 40, 50, 50, 50,
	50, 60, 60, 70, 80, 100, 100, 100, 100, 100,
	10, 20, 30, 50, 100, 10, 20, 50, 30, 1000,
}

// churnConfig is TestChurn's sizing, from the environment.
type churnConfig struct {
	scales   []int
	rates    []int
	duration time.Duration
	probes   int // timed changes per second, at most
}

func loadChurnConfig(t testing.TB) churnConfig {
	t.Helper()
	c := churnConfig{scales: []int{10000, 100000, 200000}, rates: []int{10, 100, 500}, duration: time.Minute, probes: 10}
	if loadConfig(t).smoke {
		c = churnConfig{scales: []int{2000}, rates: []int{10}, duration: 5 * time.Second, probes: 10}
	}
	c.scales = envInts(t, ChurnScalesEnv, c.scales)
	c.rates = envInts(t, ChurnRatesEnv, c.rates)
	c.duration = envDuration(t, ChurnDurationEnv, c.duration)
	c.probes = envInts(t, ChurnProbesEnv, []int{c.probes})[0]
	return c
}

// envInts returns the positive integers, comma-separated, of the
// environment variable name, or def when it is unset.
func envInts(t testing.TB, name string, def []int) []int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want positive integers, comma-separated", name, v)
		}
		out = append(out, n)
	}
	return out
}

// envDuration returns the duration of the environment variable name, at
// least a second, or def when it is unset.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		t.Fatalf("%s=%q: want a duration of at least 1s", name, v)
	}
	return d
}

// churnTarget is one endpoint the writer flips: its slice's index in
// churnWriter.slices and its index in the slice.
type churnTarget struct {
	slice, ep int32
}

// churnWriter owns the EndpointSlices the churn flips, as last written.
type churnWriter struct {
	client kubernetes.Interface
	slices []*discoveryv1.EndpointSlice
	order  []churnTarget // the endpoints in the order they are flipped
	next   int           // the index in order of the next change
}

// add takes up the slices of svcs (as createServices writes them) and
// shuffles the order of changes again over every endpoint except those of
// keep, the Services the servers' readiness checks ask for.
func (w *churnWriter) add(svcs []service, keep ...service) {
	for _, s := range svcs {
		for i := 0; i < len(s.eps); i += sliceSize {
			w.slices = append(w.slices, endpointSlice(s, i/sliceSize, s.eps[i:min(i+sliceSize, len(s.eps))]))
		}
	}
	kept := map[[2]string]bool{}
	for _, s := range keep {
		kept[[2]string{s.ns, s.name}] = true
	}
	w.order = w.order[:0]
	for i, sl := range w.slices {
		if kept[[2]string{sl.Namespace, sl.Labels[discoveryv1.LabelServiceName]}] {
			continue
		}
		for j := range sl.Endpoints {
			w.order = append(w.order, churnTarget{slice: int32(i), ep: int32(j)})
		}
	}
	rng := rand.New(rand.NewPCG(17, uint64(len(w.slices))))
	rng.Shuffle(len(w.order), func(i, j int) { w.order[i], w.order[j] = w.order[j], w.order[i] })
	w.next = 0
}

// flip writes the slice of c with c's endpoint's Ready and Serving
// conditions turned over, as a kubelet's probe failing or passing turns
// them, and returns the endpoint's owner name in the zone and whether it
// is now ready. A failed write leaves the slice as it was.
func (w *churnWriter) flip(ctx context.Context, c churnTarget) (name string, ready bool, err error) {
	sl := w.slices[c.slice]
	e := &sl.Endpoints[c.ep]
	ready = !*e.Conditions.Ready
	e.Conditions.Ready, e.Conditions.Serving = new(ready), new(ready)
	// No resourceVersion: the update is unconditional, and only this
	// writer writes the slice.
	if _, err := w.client.DiscoveryV1().EndpointSlices(sl.Namespace).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		e.Conditions.Ready, e.Conditions.Serving = new(!ready), new(!ready)
		return "", false, fmt.Errorf("update endpointslice %s/%s: %w", sl.Namespace, sl.Name, err)
	}
	return endpointName(e.Addresses[0], sl.Labels[discoveryv1.LabelServiceName], sl.Namespace), ready, nil
}

// endpointName is the zone's name of an endpoint without a hostname: its
// IPv4 address dashed, under its Service.
func endpointName(ip, service, ns string) string {
	return strings.ReplaceAll(ip, ".", "-") + "." + service + "." + ns + ".svc." + zone
}

// churnRun is what one rate measured.
type churnRun struct {
	endpoints, rate      int
	done, dropped, fails int
	elapsed              time.Duration
	writes               []time.Duration            // API write latencies
	lat                  map[string][]time.Duration // write → changed answer
	after                map[string][]time.Duration // write's response → changed answer
	missed               map[string]int
	usage                map[string]usage
	firstErr             error
}

// run makes rate changes per second for d, times the propagation of at
// most probes of them per second (a change is timed when it is queued at
// least 1/probes s after the previous timed one) to each server's answer,
// and measures the servers meanwhile.
func (w *churnWriter) run(ctx context.Context, servers []*churnServer, rate int, d time.Duration, probes int) churnRun {
	r := churnRun{rate: rate, lat: map[string][]time.Duration{}, after: map[string][]time.Duration{}, missed: map[string]int{}}
	var (
		mu      sync.Mutex
		workers sync.WaitGroup
		timed   sync.WaitGroup
	)
	type change struct {
		churnTarget
		probe bool // time its propagation
	}
	queues := make([]chan change, churnWorkers)
	for k := range queues {
		queues[k] = make(chan change, churnQueue)
		workers.Go(func() {
			for c := range queues[k] {
				begin := time.Now()
				name, ready, err := w.flip(ctx, c.churnTarget)
				took := time.Since(begin)
				mu.Lock()
				if err != nil {
					r.fails++
					if r.firstErr == nil {
						r.firstErr = err
					}
					mu.Unlock()
					continue
				}
				r.done++
				r.writes = append(r.writes, took)
				mu.Unlock()
				if c.probe {
					timed.Go(func() { r.record(&mu, servers, took, awaitPresence(servers, name, ready, begin, probeTimeout)) })
				}
			}
		})
	}
	meter := startMeter(servers)
	start := time.Now()
	nextProbe := start
	for n := 0; ; n++ {
		at := start.Add(time.Duration(n) * time.Second / time.Duration(rate))
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		c := change{churnTarget: w.order[w.next%len(w.order)], probe: !at.Before(nextProbe)}
		w.next++
		select {
		case queues[int(c.slice)%churnWorkers] <- c:
			if c.probe {
				nextProbe = at.Add(time.Second / time.Duration(probes))
			}
		default:
			r.dropped++
		}
	}
	for _, q := range queues {
		close(q)
	}
	workers.Wait()
	r.elapsed = time.Since(start)
	r.usage = meter.stop()
	timed.Wait()
	return r
}

// record adds one timed change's propagation per server, its write having
// taken write. A server that missed it (zero) counts probeTimeout: the
// percentiles then say at least that much rather than leave it out.
func (r *churnRun) record(mu *sync.Mutex, servers []*churnServer, write time.Duration, took []time.Duration) {
	mu.Lock()
	defer mu.Unlock()
	for i, s := range servers {
		if took[i] == 0 {
			r.missed[s.name]++
			r.lat[s.name] = append(r.lat[s.name], probeTimeout)
			continue
		}
		r.lat[s.name] = append(r.lat[s.name], took[i])
		r.after[s.name] = append(r.after[s.name], took[i]-write)
	}
}

// present asks addr for name's A records: present says whether it has
// any; ok is false for an answer that says neither (an error, a timeout,
// a SERVFAIL).
func present(addr, name string) (has, ok bool) {
	r, err := exchange(addr, name, dns.TypeA, false)
	if err != nil {
		return false, false
	}
	switch r.Rcode {
	case dns.RcodeNameError:
		return false, true
	case dns.RcodeSuccess:
		for _, rr := range r.Answer {
			if _, a := rr.(*dns.A); a {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

// awaitPresence polls every server concurrently until its answer for name
// has A records (want) or has none (!want), and returns each one's time
// from begin, or zero for a server that did not within timeout.
func awaitPresence(servers []*churnServer, name string, want bool, begin time.Time, timeout time.Duration) []time.Duration {
	took := make([]time.Duration, len(servers))
	deadline := begin.Add(timeout)
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if has, ok := present(s.addr, name); ok && has == want {
					took[i] = time.Since(begin)
					return
				}
				time.Sleep(propPoll)
			}
		})
	}
	wg.Wait()
	return took
}

// churnScale is one scale's fixture and start-up.
type churnScale struct {
	endpoints, services, large, namespaces, slices int
	created                                        time.Duration
	ready                                          map[string]time.Duration
}

func TestChurn(t *testing.T) {
	cfg := loadChurnConfig(t)
	cp := harness.Start(t, harness.Options{})
	ctx := context.Background()
	w := &churnWriter{client: fastClient(t, cp)}
	var scales []churnScale
	var runs []churnRun
	var svcs []service
	for _, total := range cfg.scales {
		prev := len(svcs)
		svcs = sizedFixture(churnSizes, total)
		if prev > len(svcs) {
			t.Fatalf("%s must grow: %v", ChurnScalesEnv, cfg.scales)
		}
		sc := churnScale{services: len(svcs), ready: map[string]time.Duration{}}
		begin := time.Now()
		sc.namespaces = createFixture(t, ctx, w.client, svcs, prev)
		sc.created = time.Since(begin)
		check := svcs[len(svcs)-1]
		w.add(svcs[prev:], svcs[0], check)
		sc.slices = len(w.slices)
		for _, s := range svcs {
			sc.endpoints += len(s.eps)
			if len(s.eps) >= 1000 {
				sc.large++
			}
		}
		t.Logf("%d endpoints in %d Services: created in %v", sc.endpoints, len(svcs), sc.created.Round(time.Millisecond))

		servers := startChurnServers(t, cp.KubeconfigPath, &sc, svcs[0], check)
		for _, rate := range cfg.rates {
			time.Sleep(2 * time.Second) // the previous rate's tail settles
			r := w.run(ctx, servers, rate, cfg.duration, cfg.probes)
			r.endpoints = sc.endpoints
			if r.firstErr != nil {
				t.Logf("%d of %d writes failed, the first: %v", r.fails, r.fails+r.done, r.firstErr)
			}
			t.Logf("%d endpoints, %d changes/s: %d written in %v, %d dropped", sc.endpoints, rate, r.done, r.elapsed.Round(time.Millisecond), r.dropped)
			runs = append(runs, r)
		}
		for _, s := range servers {
			if err := s.p.Stop(); err != nil {
				t.Fatal(err)
			}
		}
		scales = append(scales, sc)
	}
	report(t, churnReport(t, cfg, scales, runs))
}

// startChurnServers starts hdns and CoreDNS (with its prometheus plugin)
// fresh, unpinned, one after the other, and records in sc how long each
// took until it answered the checked Services in full.
func startChurnServers(t testing.TB, kubeconfig string, sc *churnScale, check ...service) []*churnServer {
	t.Helper()
	ready := func(addr string) error {
		for _, s := range check {
			if err := expect(addr, s.fqdn(), dns.TypeA, true, dns.RcodeSuccess, len(s.eps)); err != nil {
				return err
			}
		}
		return nil
	}
	hdnsBinary(t) // built before the clock starts
	begin := time.Now()
	h := startHDNS(t, kubeconfig, "")
	waitReady(t, h, ready)
	sc.ready[h.name] = time.Since(begin)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testproc.FreePort(t))
	begin = time.Now()
	co := startCoreDNSWith(t, kubeconfig, "", "    prometheus "+metricsAddr+"\n", ready)
	sc.ready[co.name] = time.Since(begin)
	return []*churnServer{
		{server: h, metrics: "http://" + h.http + "/metrics"},
		{server: co, metrics: "http://" + metricsAddr + "/metrics"},
	}
}
