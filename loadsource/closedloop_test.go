package loadsource_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/promtest"
	"github.com/hdns-dev/hdns/loadsource"
	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server"
	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/zone"
)

// backend is one "pod" of unequal capacity: a single worker that serves
// requests in turn, each taking service time; inflight counts requests
// queued or being served, and /metrics exposes it for Prometheus.
type backend struct {
	pod      string
	addr     netip.Addr
	service  time.Duration
	worker   sync.Mutex
	inflight atomic.Int64
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		fmt.Fprintf(w, "# TYPE inflight gauge\ninflight{namespace=\"ns\",pod=%q} %d\n", b.pod, b.inflight.Load())
		return
	}
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	b.worker.Lock()
	time.Sleep(b.service)
	b.worker.Unlock()
}

// BenchmarkClosedLoop is the closed-loop experiment, run once
// whatever -benchtime says: three backends on 127.0.0.10-12 (one twice as
// slow), clients that resolve a Service through a real hdns with Go's
// resolver and send a request to the address they get, as soon as their
// previous one is answered; a real Prometheus scrapes the backends'
// in-flight gauges every second and hdns polls it. It reports request
// latency p50/p99 and the busiest backend's mean in-flight over the mean
// (max/mean) for ordered, round-robin, least-loaded with live load, and an
// ideal join-shortest-queue assignment that reads in-flight directly.
//
//	go test -run '^$' -bench ClosedLoop -benchtime 1x ./loadsource
//
// Each client asks from its own address (127.0.1.x), as pods do. The
// least-loaded run is repeated against a second hdns without a load source
// (noprom: its handouts and the clients' holds alone), and with every
// client on 127.0.0.1, which is what hdns sees of many clients behind one
// address.
//
// Why the clients' holds matter here: the clients never pause, so the
// backends hold all 12 requests between them at every instant, a closed
// queueing network at full load. Routing that does not see the queues as
// they are now gives such a network no force that keeps the requests
// spread: a share a few percent off for a quarter of a second moves most
// of them onto one backend (traces of in-flight per backend went
// [0 12 0] → [9 1 1] → [10 0 1] within 0.75 s), and even with exactly the
// right shares every split of the 12 is equally likely (the Gordon–Newell
// product form). A scraped gauge is a scrape and a poll old; the share
// weights it drives only get the long-run split right (the slow backend's
// share of requests went from 25% to 18–21%; its capacity is 20%). What
// holds the split is that a client asking again has finished its previous
// request: the count of clients whose latest answer named each backend is
// its in-flight load now (policy.holdings). With it least-loaded is level
// with the ideal, with or without Prometheus; with one address for every
// client it has no holds to count, and its p99 is ≈ 2× the ideal's.
func BenchmarkClosedLoop(b *testing.B) {
	const (
		clients = 12
		warmup  = 3 * time.Second // not measured: the previous phase's queues drain
		phase   = 10 * time.Second
	)
	backends := []*backend{
		{pod: "p-0", addr: netip.MustParseAddr("127.0.0.10"), service: 2 * time.Millisecond},
		{pod: "p-1", addr: netip.MustParseAddr("127.0.0.11"), service: 4 * time.Millisecond},
		{pod: "p-2", addr: netip.MustParseAddr("127.0.0.12"), service: 2 * time.Millisecond},
	}
	port := 0
	var targets []string
	for _, be := range backends {
		l, err := net.Listen("tcp", netip.AddrPortFrom(be.addr, uint16(port)).String())
		if err != nil {
			b.Fatalf("backend %s: %v", be.pod, err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		srv := &http.Server{Handler: be, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		b.Cleanup(func() { srv.Close() })
		targets = append(targets, l.Addr().String())
	}
	prom := promtest.Start(b, scrapeInterval, targets...)

	var svcs []*zone.Service
	var sl []*zone.EndpointSlice
	for _, p := range []string{"ordered", "round-robin", "least-loaded"} {
		svc := fixture.Service{Namespace: "ns", Name: p, Headless: true,
			Annotations: map[string]string{zone.AnnotationPolicy: p + ", first=1"}}
		slice := fixture.EndpointSlice{Namespace: "ns", Name: p + "-1", Service: p}
		for _, be := range backends {
			slice.Endpoints = append(slice.Endpoints, fixture.Endpoint{Address: be.addr.String(), Pod: be.pod})
		}
		svcs = append(svcs, zone.ServiceFromAPI(svc.API()))
		sl = append(sl, zone.EndpointSliceFromAPI(slice.API()))
	}
	compiler, err := policy.NewCompiler("ordered")
	if err != nil {
		b.Fatal(err)
	}
	compiler.SetDefaultLoadQuery(loopQuery)
	opts := &zone.Options{Zones: []string{"cluster.local."}, TTL: 1, Policies: compiler}
	snap := zone.Build(opts, 1, svcs, sl)
	src, err := loadsource.New(loadsource.Config{URL: prom.URL, Query: loopQuery, Interval: 500 * time.Millisecond}, compiler, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { src.Run(ctx) })
	// serve answers from snap on a loopback port; resolversOf gives each
	// client a Go resolver asking it from the client's own address.
	serve := func(snap *zone.Snapshot) *server.Server {
		srv := &server.Server{Addr: "127.0.0.1:0", Responder: &answer.Responder{Snapshot: func() *zone.Snapshot { return snap }, Zones: []string{"cluster.local."}}}
		if err := srv.Listen(); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { srv.Serve(ctx) })
		return srv
	}
	resolversOf := func(srv *server.Server) []*net.Resolver {
		rs := make([]*net.Resolver, clients)
		for c := range rs {
			src := &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(c+1))}
			rs[c] = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				d := net.Dialer{LocalAddr: src}
				return d.DialContext(ctx, "udp", srv.UDPAddr().String())
			}}
		}
		return rs
	}
	dnsSrv := serve(snap)
	resolvers := resolversOf(dnsSrv)
	// The same Services from an hdns without a load source: least-loaded
	// on its own handouts and holds.
	ledgerCompiler, err := policy.NewCompiler("ordered")
	if err != nil {
		b.Fatal(err)
	}
	ledgerResolvers := resolversOf(serve(zone.Build(&zone.Options{Zones: opts.Zones, TTL: opts.TTL, Policies: ledgerCompiler}, 1, svcs, sl)))
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 10 * time.Second}

	run := func(name string, pick func(context.Context, int) (netip.Addr, error)) {
		var mu sync.Mutex
		var lat []time.Duration
		var errs atomic.Int64
		picks := make([]atomic.Int64, len(backends))
		pctx, stop := context.WithTimeout(ctx, phase)
		defer stop()
		measureFrom := time.Now().Add(warmup)
		var cw sync.WaitGroup
		for c := range clients {
			cw.Go(func() {
				for pctx.Err() == nil {
					addr, err := pick(pctx, c)
					if err != nil {
						if pctx.Err() == nil {
							errs.Add(1)
						}
						continue
					}
					start := time.Now()
					for i, be := range backends {
						if be.addr == addr && !start.Before(measureFrom) {
							picks[i].Add(1)
						}
					}
					resp, err := httpClient.Get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(addr, uint16(port))))
					if err != nil {
						errs.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					d := time.Since(start)
					if start.Before(measureFrom) {
						continue
					}
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			})
		}
		// Sample in-flight every 10ms while the phase runs.
		sums := make([]float64, len(backends))
		samples := 0
		tick := time.NewTicker(10 * time.Millisecond)
		for pctx.Err() == nil {
			<-tick.C
			if time.Now().Before(measureFrom) {
				continue
			}
			for i, be := range backends {
				sums[i] += float64(be.inflight.Load())
			}
			samples++
		}
		tick.Stop()
		cw.Wait()
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatalf("%s: no request completed (%d errors)", name, errs.Load())
		}
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		total := 0.0
		for _, s := range sums {
			total += s
		}
		maxMean := slices.Max(sums) / (total / float64(len(sums)))
		var share []int64
		for i := range picks {
			share = append(share, picks[i].Load())
		}
		b.Logf("%-19s requests %6d  p50 %7.2fms  p99 %7.2fms  in-flight mean per backend %v  max/mean %.2f  requests per backend %v  errors %d",
			name, len(lat), ms(p50), ms(p99), meanPer(sums, samples), maxMean, share, errs.Load())
		b.ReportMetric(ms(p99), name+"-p99-ms")
		b.ReportMetric(maxMean, name+"-max/mean")
	}
	lookupWith := func(resolvers []*net.Resolver, svc string) func(context.Context, int) (netip.Addr, error) {
		return func(ctx context.Context, c int) (netip.Addr, error) {
			addrs, err := resolvers[c].LookupNetIP(ctx, "ip4", svc+".ns.svc.cluster.local.")
			if err != nil {
				return netip.Addr{}, err
			}
			return addrs[0], nil
		}
	}
	lookup := func(svc string) func(context.Context, int) (netip.Addr, error) { return lookupWith(resolvers, svc) }
	// One experiment, whatever b.N is: it takes longer than any
	// -benchtime that would make the framework call again.
	run("ordered", lookup("ordered"))
	run("round-robin", lookup("round-robin"))
	run("least-loaded", lookup("least-loaded"))
	run("least-loaded-noprom", lookupWith(ledgerResolvers, "least-loaded"))
	shared := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dnsSrv.UDPAddr().String())
	}}
	run("least-loaded-1addr", func(ctx context.Context, _ int) (netip.Addr, error) {
		addrs, err := shared.LookupNetIP(ctx, "ip4", "least-loaded.ns.svc.cluster.local.")
		if err != nil {
			return netip.Addr{}, err
		}
		return addrs[0], nil
	})
	run("ideal-jsq", func(context.Context, int) (netip.Addr, error) {
		best := backends[0]
		for _, be := range backends[1:] {
			if be.inflight.Load() < best.inflight.Load() {
				best = be
			}
		}
		return best.addr, nil
	})
}

// loopQuery smooths the scraped in-flight gauge over a few scrapes, as an
// operator would: an instantaneous queue length is noise at this scale.
var loopQuery = "avg_over_time(inflight[3s])"

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func meanPer(sums []float64, n int) []string {
	var out []string
	for _, s := range sums {
		out = append(out, fmt.Sprintf("%.1f", s/float64(max(n, 1))))
	}
	return out
}
