package kube

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
	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/zone"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestSourceShrinksAndGates is a narrow test of the watch layer on
// client-go's fake clientset; test/e2e proves it on a real API server.
func TestSourceShrinksAndGates(t *testing.T) {
	web := fixture.Service{Namespace: "awx", Name: "web", Headless: true, Labels: map[string]string{"tier": "front"}}.API()
	web.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	client := fake.NewClientset(
		web,
		fixture.Service{Namespace: "awx", Name: "other", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "awx", Name: "web-1", Service: "web", Endpoints: []fixture.Endpoint{{Address: "10.0.0.1", Ready: new(true)}}}.API(),
	)
	src := &Source{Client: client, LabelSelector: "tier=front"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sink sourcetest.Sink
	go src.Run(ctx, &sink)
	sourcetest.WaitFor(t, func() bool { _, _, ok := sink.List(); return ok })
	svcs, slices, ok := sink.List()
	if !ok || len(svcs) != 1 || svcs[0].Name != "web" || svcs[0].Kind != zone.KindHeadless {
		t.Fatalf("List after sync: %+v complete=%v; want only the selected headless Service", svcs, ok)
	}
	if len(slices) != 1 || len(slices[0].Endpoints) != 1 || slices[0].Endpoints[0].Address().String() != "10.0.0.1" {
		t.Fatalf("slices %+v", slices)
	}
	if err := client.DiscoveryV1().EndpointSlices("awx").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, func() bool { _, s, _ := sink.List(); return len(s) == 0 })
	if c := sink.Changes(); len(c) != 1 || c[0].Op != zone.OpDelete || c[0].Key().Name != "web-1" {
		t.Errorf("changes after the delete: %+v, want the slice's delete alone", c)
	}
}

// TestSourceRelistsAfterOutage drives the API probe down and up: the
// source reports the outage, then starts fresh informers and switches to
// them once synced, still serving throughout; the relist drops what went
// while the watch was dead.
func TestSourceRelistsAfterOutage(t *testing.T) {
	client := fake.NewClientset(fixture.Service{Namespace: "awx", Name: "web", Headless: true}.API())
	var down atomic.Bool
	reg := prometheus.NewRegistry()
	m := zone.NewMetrics(reg)
	src := &Source{Client: client, Metrics: m, Log: discard, ProbeInterval: 10 * time.Millisecond, Probe: outageProbe(&down)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sink sourcetest.Sink
	go src.Run(ctx, &sink)
	sourcetest.WaitFor(t, func() bool { _, _, ok := sink.List(); return ok })
	up := func() float64 { return testutil.ToFloat64(m.SourceUp) }
	if up() != 1 || src.sets.Load() != 1 {
		t.Fatalf("after sync: up %v, %d watch sets", up(), src.sets.Load())
	}
	down.Store(true)
	sourcetest.WaitFor(t, func() bool { return up() == 0 })
	if svcs, _, ok := sink.List(); !ok || len(svcs) != 1 {
		t.Fatal("the last zone is gone during the outage")
	}
	if testutil.ToFloat64(m.SourceErrors.WithLabelValues("kubernetes")) != 1 {
		t.Error("the outage was not counted once")
	}
	// The fake's watch outlives the outage; a real one would be dead, and
	// miss what changes meanwhile.
	src.current.Load().stop()
	if err := client.CoreV1().Services("awx").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services("awx").Create(ctx, fixture.Service{Namespace: "awx", Name: "kept"}.API(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := sink.Calls()
	down.Store(false)
	sourcetest.WaitFor(t, func() bool { return up() == 1 })
	if src.sets.Load() != 2 || sink.Calls() <= before {
		t.Errorf("after the outage: %d watch sets, %d calls of the sink; want a fresh set and a relist", src.sets.Load(), sink.Calls()-before)
	}
	if svcs, _, _ := sink.List(); len(svcs) != 1 || svcs[0].Name != "kept" {
		t.Errorf("after the relist: %d Services, want kept alone", len(svcs))
	}
	if _, err := client.CoreV1().Services("awx").Create(ctx, fixture.Service{Namespace: "awx", Name: "new"}.API(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, func() bool { s, _, _ := sink.List(); return len(s) == 2 })
}

// outageProbe is a Probe of an API server that is unreachable while down
// is set.
func outageProbe(down *atomic.Bool) func(context.Context) error {
	return func(context.Context) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
}

// runSynced runs a Source of client until the test ends and waits for its
// first List.
func runSynced(t *testing.T, client *fake.Clientset) (context.Context, *Source, *sourcetest.Sink) {
	t.Helper()
	src := &Source{Client: client}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sink := &sourcetest.Sink{}
	go src.Run(ctx, sink)
	sourcetest.WaitFor(t, func() bool { _, _, ok := sink.List(); return ok })
	return ctx, src, sink
}

// TestSourceDropsUpdatesThatChangeNothing: an update of what the shrink
// drops reaches no one; one of what DNS uses does.
func TestSourceDropsUpdatesThatChangeNothing(t *testing.T) {
	web := fixture.Service{Namespace: "awx", Name: "web", Headless: true}.API()
	slice := fixture.EndpointSlice{Namespace: "awx", Name: "web-1", Service: "web", Endpoints: []fixture.Endpoint{{Address: "10.0.0.1", Ready: new(true)}}}.API()
	client := fake.NewClientset(web, slice)
	ctx, src, sink := runSynced(t, client)

	web.Labels = map[string]string{"team": "a"}
	web.ResourceVersion = "2"
	if _, err := client.CoreV1().Services("awx").Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice.Annotations = map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-12-07T02:00:00Z"}
	if _, err := client.DiscoveryV1().EndpointSlices("awx").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice.Endpoints[0].Conditions.Ready = new(false)
	if _, err := client.DiscoveryV1().EndpointSlices("awx").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, func() bool { return len(sink.Changes()) > 0 })
	time.Sleep(50 * time.Millisecond)
	c := sink.Changes()
	if len(c) != 1 || c[0].Kind != zone.ObjectEndpointSlice || c[0].Slice.Endpoints[0].Ready {
		t.Errorf("changes %+v, want the readiness update alone", c)
	}
	// One copy: the cache kept the object the zone holds.
	cached, _, _ := src.current.Load().services.GetStore().GetByKey("awx/web")
	if svcs, _, _ := sink.List(); len(svcs) != 1 || cached != any(svcs[0]) {
		t.Error("the cache holds another copy of an unchanged Service than the zone")
	}
}

// TestSourcePassesHintChanges: EndpointSlice hints survive the shrink, and
// an update that changes only them reaches the zone.
func TestSourcePassesHintChanges(t *testing.T) {
	slice := fixture.EndpointSlice{Namespace: "awx", Name: "web-1", Service: "web", Endpoints: []fixture.Endpoint{
		{Address: "10.0.0.1", Ready: new(true), NodeName: "n1", Zone: "a", ForZones: []string{"a"}}}}
	api := slice.API()
	client := fake.NewClientset(fixture.Service{Namespace: "awx", Name: "web", Headless: true}.API(), api)
	ctx, _, sink := runSynced(t, client)
	if _, s, _ := sink.List(); len(s) != 1 || s[0].Endpoints[0].Topology == nil || s[0].Endpoints[0].Topology.ForZones != "a" {
		t.Fatalf("slices after sync %+v: want the endpoint's forZones hint", s)
	}
	slice.Endpoints[0].ForZones, slice.Endpoints[0].ForNodes = []string{"a", "b"}, []string{"n1"}
	api = slice.API()
	api.ResourceVersion = "2"
	if _, err := client.DiscoveryV1().EndpointSlices("awx").Update(ctx, api, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, func() bool { return len(sink.Changes()) > 0 })
	c := sink.Changes()
	if len(c) != 1 || c[0].Kind != zone.ObjectEndpointSlice {
		t.Fatalf("changes %+v, want the hints update", c)
	}
	if got, want := *c[0].Slice.Endpoints[0].Topology, (zone.Topology{NodeName: "n1", Zone: "a", ForZones: "a b", ForNodes: "n1"}); got != want {
		t.Errorf("topology after the update %+v, want %+v", got, want)
	}
}
