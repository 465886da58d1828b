package zone

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestPublisherCoalescesAndWaitsForCompleteView(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPublisher(testOptions(t), discard, m)
	var rebuilds atomic.Int32
	release := make(chan struct{})
	p.rebuilt = func() {
		if rebuilds.Add(1) == 2 {
			<-release // hold the second build while changes pile up
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	p.Apply(ServiceChange(OpUpsert, &Service{Namespace: "n", Name: "early"}))
	waitFor(t, func() bool { return rebuilds.Load() == 1 })
	if p.Snapshot() != nil {
		t.Fatal("published a snapshot before the source synced")
	}
	p.Replace(nil, nil)
	waitFor(t, func() bool { return rebuilds.Load() == 2 })
	if p.Snapshot() == nil || p.Snapshot().Stats.Services != 0 {
		t.Fatal("the synced view was not published, or the object Replace dropped stayed")
	}
	for i := range 100 {
		p.Apply(ServiceChange(OpUpsert, &Service{Namespace: "n", Name: fmt.Sprint("s", i%50)}))
	}
	close(release)
	waitFor(t, func() bool { return rebuilds.Load() == 3 })
	time.Sleep(50 * time.Millisecond)
	if n := rebuilds.Load(); n != 3 {
		t.Errorf("100 changes during a build caused %d more builds, want 1", n-2)
	}
	if got := p.Snapshot().Stats.Services; got != 50 {
		t.Errorf("%d Services after the batch, want 50", got)
	}
	if got := testutil.ToFloat64(m.Changes.WithLabelValues("service", "upsert")); got != 50 {
		t.Errorf("hdns_zone_changes_total{service,upsert} = %v, want the batch's 50 Services", got)
	}
}

// TestPublisherReplaceDiffs: a Replace changes only what it holds anew, no
// more, or not equivalent, and a rebuild without changes is skipped.
func TestPublisherReplaceDiffs(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPublisher(testOptions(t), discard, m)
	a, b := &Service{Namespace: "n", Name: "a"}, &Service{Namespace: "n", Name: "b"}
	p.Replace([]*Service{a, b}, nil)
	if !p.Rebuild() {
		t.Fatal("no build after the first Replace")
	}
	p.Replace([]*Service{a}, nil)
	if !p.Rebuild() || p.Snapshot().Stats.Services != 1 {
		t.Fatal("the relist did not drop the Service it no longer holds")
	}
	count := func(op string) float64 { return testutil.ToFloat64(m.Changes.WithLabelValues("service", op)) }
	if count("upsert") != 2 || count("delete") != 1 {
		t.Errorf("changes: %v upserts, %v deletes; want 2 and 1", count("upsert"), count("delete"))
	}
	// A relist decodes every object anew: what only moved its
	// resourceVersion is no change, but the build takes the new copies so
	// that the old ones can go.
	a2 := &Service{Namespace: "n", Name: "a", ResourceVersion: "2"}
	p.Replace([]*Service{a2}, nil)
	if !p.Rebuild() || count("upsert") != 2 || count("delete") != 1 {
		t.Errorf("an equivalent relist: %v upserts, %v deletes, or no build; want no more changes and a build", count("upsert"), count("delete"))
	}
	if services, _ := p.store.all(); len(services) != 1 || services[0] != a2 {
		t.Error("the store kept the old copy of an equivalent object")
	}
	p.Apply()
	if p.Rebuild() {
		t.Error("a batch without changes rebuilt")
	}
}

func TestProgrammingLatency(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := NewPublisher(testOptions(t), discard, m)
	old := time.Now().Add(-time.Hour)
	slice := &EndpointSlice{Namespace: "n", Name: "s", Service: "s", TriggerTime: old}
	p.Replace(nil, []*EndpointSlice{slice})
	p.Rebuild()
	if got := histogramCount(t, reg); got != 0 {
		t.Errorf("the first build observed %d latencies; its trigger times are history", got)
	}
	p.Apply(SliceChange(OpUpsert, slice))
	p.Rebuild()
	if got := histogramCount(t, reg); got != 0 {
		t.Errorf("an unchanged trigger time was observed again (%d)", got)
	}
	slice = &EndpointSlice{Namespace: "n", Name: "s", Service: "s", TriggerTime: time.Now().Add(-30 * time.Millisecond)}
	p.Apply(SliceChange(OpUpsert, slice))
	p.Rebuild()
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

// TestPublisherReleasesMemoryWhenQuiet: the replaced snapshots' memory is
// released once per burst of rebuilds, after the zone stays unchanged for
// releaseAfter, and never while changes keep coming.
func TestPublisherReleasesMemoryWhenQuiet(t *testing.T) {
	p := NewPublisher(testOptions(t), discard, nil)
	var releases atomic.Int32
	p.release = func() { releases.Add(1) }
	var builds atomic.Int32
	p.rebuilt = func() { builds.Add(1) }
	p.Replace(nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	// Changes every releaseAfter/4 for 2×releaseAfter: no release.
	deadline := time.Now().Add(2 * releaseAfter)
	for i := 0; time.Now().Before(deadline); i++ {
		p.Apply(ServiceChange(OpUpsert, &Service{Namespace: "n", Name: fmt.Sprint("s", i)}))
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

// TestBuildKinds: the first build is full and a change's build
// incremental; each counts under its kind, and the incremental one counts
// the Services it rebuilt.
func TestBuildKinds(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPublisher(testOptions(t), discard, m)
	a, b := &Service{Namespace: "n", Name: "a"}, &Service{Namespace: "n", Name: "b"}
	p.Replace([]*Service{a, b}, nil)
	p.Rebuild()
	p.Apply(ServiceChange(OpUpsert, &Service{Namespace: "n", Name: "a", Kind: KindExternalName, ExternalName: "x.example"}))
	p.Rebuild()
	builds := func(kind string) uint64 {
		var out dto.Metric
		if err := m.BuildDuration.WithLabelValues(kind).(prometheus.Histogram).Write(&out); err != nil {
			t.Fatal(err)
		}
		return out.GetHistogram().GetSampleCount()
	}
	if builds(BuildFull) != 1 || builds(BuildIncremental) != 1 || testutil.ToFloat64(m.RebuiltServices) != 1 {
		t.Errorf("%d full and %d incremental builds, %v Services rebuilt; want 1, 1 and 1",
			builds(BuildFull), builds(BuildIncremental), testutil.ToFloat64(m.RebuiltServices))
	}
	if _, n := p.Snapshot().Lookup("a.n.svc.cluster.local."); n == nil || n.CNAME() == nil {
		t.Error("the incremental build lost the change")
	}
}
