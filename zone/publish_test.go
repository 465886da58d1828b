package zone

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/hdns-dev/hdns/internal/fixture"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestPublisherCoalescesAndWaitsForCompleteView(t *testing.T) {
	p := NewPublisher(testOptions(t), discard, nil)
	var lists atomic.Int32
	var complete atomic.Bool
	release := make(chan struct{})
	list := func() ([]*Service, []*EndpointSlice, bool) {
		if lists.Add(1) == 2 {
			<-release // hold the second build while changes pile up
		}
		return nil, nil, complete.Load()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx, list)

	p.Changed()
	waitFor(t, func() bool { return lists.Load() == 1 })
	if p.Snapshot() != nil {
		t.Fatal("published a snapshot of an incomplete view")
	}
	complete.Store(true)
	p.Changed()
	waitFor(t, func() bool { return lists.Load() == 2 })
	for range 100 {
		p.Changed()
	}
	close(release)
	waitFor(t, func() bool { return p.Snapshot() != nil })
	waitFor(t, func() bool { return lists.Load() == 3 })
	time.Sleep(50 * time.Millisecond)
	if n := lists.Load(); n != 3 {
		t.Errorf("100 changes during a build caused %d more builds, want 1", n-2)
	}
}

func TestProgrammingLatency(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := NewPublisher(testOptions(t), discard, m)
	old := time.Now().Add(-time.Hour)
	slice := &EndpointSlice{Namespace: "n", Name: "s", Service: "s", TriggerTime: old}
	list := func() ([]*Service, []*EndpointSlice, bool) { return nil, []*EndpointSlice{slice}, true }
	p.Rebuild(list)
	if got := histogramCount(t, reg); got != 0 {
		t.Errorf("the first build observed %d latencies; its trigger times are history", got)
	}
	p.Rebuild(list)
	if got := histogramCount(t, reg); got != 0 {
		t.Errorf("an unchanged trigger time was observed again (%d)", got)
	}
	slice = &EndpointSlice{Namespace: "n", Name: "s", Service: "s", TriggerTime: time.Now().Add(-30 * time.Millisecond)}
	p.Rebuild(list)
	if got := histogramCount(t, reg); got != 1 {
		t.Errorf("a new trigger time gave %d observations, want 1", got)
	}
}

func histogramCount(t testing.TB, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "hdns_zone_programming_latency_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no programming latency histogram")
	return 0
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestKubeSourceShrinksAndGates is a narrow test of the watch layer on
// client-go's fake clientset; test/e2e proves it on a real API server.
func TestKubeSourceShrinksAndGates(t *testing.T) {
	web := fixture.Service{Namespace: "awx", Name: "web", Headless: true, Labels: map[string]string{"tier": "front"}}.API()
	web.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	client := fake.NewClientset(
		web,
		fixture.Service{Namespace: "awx", Name: "other", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "awx", Name: "web-1", Service: "web", Endpoints: []fixture.Endpoint{{Address: "10.0.0.1", Ready: new(true)}}}.API(),
	)
	src := &KubeSource{Client: client, LabelSelector: "tier=front"}
	if _, _, ok := src.List(); ok {
		t.Fatal("complete before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var changes atomic.Int32
	go src.Run(ctx, func() { changes.Add(1) })
	waitFor(t, func() bool { return changes.Load() > 0 })
	svcs, slices, ok := src.List()
	if !ok || len(svcs) != 1 || svcs[0].Name != "web" || svcs[0].Kind != KindHeadless {
		t.Fatalf("List after sync: %+v complete=%v; want only the selected headless Service", svcs, ok)
	}
	if len(slices) != 1 || len(slices[0].Endpoints) != 1 || slices[0].Endpoints[0].Address().String() != "10.0.0.1" {
		t.Fatalf("slices %+v", slices)
	}
	before := changes.Load()
	if err := client.DiscoveryV1().EndpointSlices("awx").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return changes.Load() > before })
	waitFor(t, func() bool { _, s, _ := src.List(); return len(s) == 0 })
}

// TestKubeSourceRelistsAfterOutage drives the API probe down and up: the
// source reports the outage, then starts fresh informers and switches to
// them once synced, still serving throughout.
func TestKubeSourceRelistsAfterOutage(t *testing.T) {
	client := fake.NewClientset(fixture.Service{Namespace: "awx", Name: "web", Headless: true}.API())
	var down atomic.Bool
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	src := &KubeSource{Client: client, Metrics: m, Log: discard, ProbeInterval: 10 * time.Millisecond,
		Probe: func(context.Context) error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var changes atomic.Int32
	go src.Run(ctx, func() { changes.Add(1) })
	waitFor(t, func() bool { _, _, ok := src.List(); return ok })
	up := func() float64 { return testutil.ToFloat64(m.SourceUp) }
	if up() != 1 || src.sets.Load() != 1 {
		t.Fatalf("after sync: up %v, %d watch sets", up(), src.sets.Load())
	}
	down.Store(true)
	waitFor(t, func() bool { return up() == 0 })
	if svcs, _, ok := src.List(); !ok || len(svcs) != 1 {
		t.Fatal("the last zone is gone during the outage")
	}
	if testutil.ToFloat64(m.SourceErrors.WithLabelValues("kubernetes")) != 1 {
		t.Error("the outage was not counted once")
	}
	before := changes.Load()
	down.Store(false)
	waitFor(t, func() bool { return up() == 1 })
	if src.sets.Load() != 2 || changes.Load() <= before {
		t.Errorf("after the outage: %d watch sets, %d changes signalled; want a fresh set and a rebuild", src.sets.Load(), changes.Load()-before)
	}
	if _, err := client.CoreV1().Services("awx").Create(ctx, fixture.Service{Namespace: "awx", Name: "new"}.API(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { s, _, _ := src.List(); return len(s) == 2 })
}

// TestPublisherReleasesMemoryWhenQuiet: the replaced snapshots' memory is
// released once per burst of rebuilds, after the zone stays unchanged for
// releaseAfter, and never while changes keep coming.
func TestPublisherReleasesMemoryWhenQuiet(t *testing.T) {
	p := NewPublisher(testOptions(t), discard, nil)
	var releases atomic.Int32
	p.release = func() { releases.Add(1) }
	var builds atomic.Int32
	list := func() ([]*Service, []*EndpointSlice, bool) { builds.Add(1); return nil, nil, true }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx, list)

	// Changes every releaseAfter/4 for 2×releaseAfter: no release.
	deadline := time.Now().Add(2 * releaseAfter)
	for time.Now().Before(deadline) {
		p.Changed()
		time.Sleep(releaseAfter / 4)
	}
	if n := releases.Load(); n != 0 {
		t.Fatalf("released %d times while the zone kept changing, want 0", n)
	}
	waitFor(t, func() bool { return releases.Load() == 1 })
	time.Sleep(releaseAfter + releaseAfter/2)
	if n := releases.Load(); n != 1 {
		t.Errorf("released %d times after one burst, want 1", n)
	}
	if builds.Load() < 5 {
		t.Errorf("only %d builds during the burst", builds.Load())
	}
}
