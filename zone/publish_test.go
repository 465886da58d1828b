package zone

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
