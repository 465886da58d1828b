package loadsource_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/internal/promtest"
	"github.com/hdns-dev/hdns/loadsource"
	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/server"
	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/zone"
)

const (
	scrapeInterval = time.Second
	pollInterval   = 500 * time.Millisecond
	maxAge         = 3 * pollInterval
)

// backends is the load the test's "pods" report: a /metrics handler with a
// gauge inflight{namespace="ns",pod="p-N"} the test sets.
type backends struct {
	mu       sync.Mutex
	inflight map[string]float64
}

func (b *backends) set(pod string, v float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight[pod] = v
}

func (b *backends) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# TYPE inflight gauge")
	for pod, v := range b.inflight {
		fmt.Fprintf(w, "inflight{namespace=%q,pod=%q} %g\n", "ns", pod, v)
	}
}

// realZone is a least-loaded Service over the three pods the backends
// report.
func realZone() ([]*zone.Service, []*zone.EndpointSlice) {
	svc := fixture.Service{Namespace: "ns", Name: "app", Headless: true,
		Annotations: map[string]string{zone.AnnotationPolicy: "least-loaded, first=1"}}
	slice := fixture.EndpointSlice{Namespace: "ns", Name: "app-1", Service: "app", Endpoints: []fixture.Endpoint{
		{Address: "10.0.0.10", Pod: "p-0"},
		{Address: "10.0.0.11", Pod: "p-1"},
		{Address: "10.0.0.12", Pod: "p-2"},
	}}
	return []*zone.Service{zone.ServiceFromAPI(svc.API())}, []*zone.EndpointSlice{zone.EndpointSliceFromAPI(slice.API())}
}

// TestRealPrometheusSteersLeastLoaded runs a real Prometheus that scrapes
// three "pods", polls it with the load source, and asks a real hdns server
// on 127.0.0.1 which pod comes first: a pod made busy stops coming first
// within two scrape+poll intervals, and with Prometheus stopped answers
// keep flowing, hdns_load_source_up is 0 and the ledger alone decides.
func TestRealPrometheusSteersLeastLoaded(t *testing.T) {
	load := &backends{inflight: map[string]float64{"p-0": 1, "p-1": 1, "p-2": 1}}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bs := &http.Server{Handler: load, ReadHeaderTimeout: 5 * time.Second}
	go bs.Serve(bl)
	t.Cleanup(func() { bs.Close() })
	prom := promtest.Start(t, scrapeInterval, bl.Addr().String())

	compiler, err := policy.NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	compiler.SetDefaultLoadQuery("inflight")
	opts := &zone.Options{Zones: []string{"cluster.local."}, TTL: 5, Policies: compiler}
	svcs, slices := realZone()
	snap := zone.Build(opts, 1, svcs, slices)

	reg := prometheus.NewRegistry()
	metrics := loadsource.NewMetrics(reg)
	src, err := loadsource.New(loadsource.Config{URL: prom.URL, Query: "inflight", Interval: pollInterval, MaxAge: maxAge},
		compiler, nil, metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var polling sync.WaitGroup
	polling.Go(func() { src.Run(ctx) })
	defer polling.Wait()
	defer cancel()

	responder := &answer.Responder{Snapshot: func() *zone.Snapshot { return snap }, Zones: []string{"cluster.local."}}
	srv := &server.Server{Addr: "127.0.0.1:0", Responder: responder}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	var serving sync.WaitGroup
	serving.Go(func() { srv.Serve(ctx) })
	defer serving.Wait()
	defer cancel()

	client := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	first := func() string {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion("app.ns.svc.cluster.local.", dns.TypeA)
		r, _, err := client.Exchange(m, srv.UDPAddr().String())
		if err != nil {
			t.Fatalf("query: %v", err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("answer %s with %d records, want NOERROR with 1", dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	const busy = "10.0.0.11" // p-1
	countBusy := func(n int) int {
		c := 0
		for range n {
			if first() == busy {
				c++
			}
			time.Sleep(5 * time.Millisecond)
		}
		return c
	}
	live := func(pod string) *policy.Sample {
		set := lookup(t, snap).Set
		for i, ep := range set.Candidates {
			if set.Endpoint(i).PodName() == pod {
				return ep.Live.Sample()
			}
		}
		t.Fatalf("no candidate for %s", pod)
		return nil
	}
	waitFor := func(what string, limit time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}

	// Equal load: p-1 comes first about a third of the time.
	waitFor("first values of all pods", 10*time.Second, func() bool {
		for _, pod := range []string{"p-0", "p-1", "p-2"} {
			if s := live(pod); s == nil || s.Missing {
				return false
			}
		}
		return true
	})
	if n := countBusy(60); n < 8 {
		t.Fatalf("equal load: p-1 first in %d of 60 answers, want about 20", n)
	}

	// p-1 gets busy: within two scrape+poll intervals its value is polled
	// and it stops coming first.
	load.set("p-1", 50)
	bound := 2 * (scrapeInterval + pollInterval)
	took := waitFor("busy value polled", bound, func() bool { s := live("p-1"); return s != nil && !s.Missing && s.Value == 50 })
	t.Logf("busy value reached hdns after %v (bound %v)", took, bound)
	if n := countBusy(60); n > 2 {
		t.Errorf("p-1 busy: first in %d of 60 answers, want ≤ 2", n)
	}
	if got := gauge(t, reg, "hdns_load_source_up"); got != 1 {
		t.Errorf("hdns_load_source_up = %v with Prometheus running", got)
	}

	// Prometheus stops: answers keep flowing (first() fails the test on
	// any SERVFAIL or error), the source is reported down, and once the
	// values go stale the ledger alone puts the idle p-1 first again.
	if err := prom.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor("hdns_load_source_up 0", 2*pollInterval+time.Second, func() bool {
		first()
		return gauge(t, reg, "hdns_load_source_up") == 0
	})
	time.Sleep(maxAge)
	if live("p-1").Fresh(time.Now()) {
		t.Fatal("p-1's value is still fresh past the staleness bound")
	}
	if n := countBusy(30); n < 5 {
		t.Errorf("Prometheus down, values stale: p-1 first in %d of 30 answers, want the ledger to favour it", n)
	}
}

func lookup(t *testing.T, snap *zone.Snapshot) *zone.Choice {
	t.Helper()
	_, n := snap.Lookup("app.ns.svc.cluster.local.")
	if n == nil || n.ChosenA == nil {
		t.Fatal("no A choice for app.ns.svc.cluster.local.")
	}
	return n.ChosenA
}

// gauge reads an unlabelled gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
