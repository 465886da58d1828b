package zone

import (
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"testing"
	"unsafe"
	"weak"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hdns-dev/hdns/internal/memtest"
	"github.com/hdns-dev/hdns/policy"
)

// BenchmarkSnapshotMemory reports the live heap a Snapshot holds per
// endpoint (snapshot-B/endpoint) and what the shrunk objects it is built
// from hold (objects-B/endpoint), for Services of 20 Pods with one named
// port, in a forward zone and both reverse zones. The figures are heap in
// use after a full GC, not RSS: a process also carries the GC's headroom
// and the garbage of the previous snapshot.
//
//	go test -run '^$' -bench SnapshotMemory -benchtime 1x ./zone
func BenchmarkSnapshotMemory(b *testing.B) {
	for _, services := range []int{50, 500} {
		const pods = 20
		b.Run(fmt.Sprintf("endpoints=%d", services*pods), func(b *testing.B) {
			for b.Loop() {
				h0 := memtest.LiveHeap()
				svcs, slices := memoryFixture(services, pods)
				h1 := memtest.LiveHeap()
				c, err := policy.NewCompiler("ordered")
				if err != nil {
					b.Fatal(err)
				}
				opts := &Options{Zones: []string{"cluster.local."}, ReverseZones: []string{"in-addr.arpa.", "ip6.arpa."}, TTL: 5, Policies: c}
				snap := Build(opts, 1, svcs, slices)
				h2 := memtest.LiveHeap()
				if snap.Stats.Endpoints != services*pods {
					b.Fatalf("snapshot holds %d endpoints, want %d", snap.Stats.Endpoints, services*pods)
				}
				n := float64(services * pods)
				b.ReportMetric(float64(h1-h0)/n, "objects-B/endpoint")
				b.ReportMetric(float64(h2-h1)/n, "snapshot-B/endpoint")
				runtime.KeepAlive(snap)
				runtime.KeepAlive(svcs)
				runtime.KeepAlive(slices)
			}
		})
	}
}

// memoryFixture makes headless Services of pods ready Pods each, named and
// addressed like a Deployment's, one EndpointSlice per Service, shrunk
// from API objects as the informers shrink them.
func memoryFixture(services, pods int) ([]*Service, []*EndpointSlice) {
	var svcs []*Service
	var slices []*EndpointSlice
	ready, http, port, tcp := true, "http", int32(80), corev1.ProtocolTCP
	for s := range services {
		svc := &Service{Namespace: fmt.Sprintf("team-%d", s%50), Name: fmt.Sprintf("svc-%d", s), Kind: KindHeadless,
			Ports: []Port{{Name: "http", Protocol: "tcp", Port: 80}}}
		api := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-x7k2p", Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &http, Port: &port, Protocol: &tcp}},
		}
		for p := range pods {
			// Fresh strings per endpoint, as the API decoder makes them.
			node, zone := fmt.Sprintf("node-%d", p%8), fmt.Sprintf("zone-%d", p%3)
			api.Endpoints = append(api.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{netip.AddrFrom4([4]byte{10, byte(s >> 8), byte(s), byte(p)}).String()},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: svc.Namespace, Name: fmt.Sprintf("%s-7d9f8b6c5-%05d", svc.Name, p)},
				NodeName:   &node,
				Zone:       &zone,
			})
		}
		svcs, slices = append(svcs, svc), append(slices, EndpointSliceFromAPI(api))
	}
	return svcs, slices
}

// TestEndpointsShareTheirTopology: the endpoints of one node and zone share
// one Topology, and the interner stays within its bound.
func TestEndpointsShareTheirTopology(t *testing.T) {
	_, slices := memoryFixture(2, 24)
	for _, sl := range slices {
		for i, e := range sl.Endpoints {
			first := slices[0].Endpoints[i%24]
			want := Topology{NodeName: fmt.Sprintf("node-%d", i%8), Zone: fmt.Sprintf("zone-%d", i%3)}
			if e.Topology == nil || *e.Topology != want || e.Topology != first.Topology {
				t.Errorf("%s endpoint %d: topology %+v at %p, want %+v shared with %p", sl.Name, i, e.Topology, e.Topology, want, first.Topology)
			}
		}
	}
	var in interner
	for i := range maxInterned + 10 {
		in.intern(Topology{NodeName: fmt.Sprintf("node-%d", i)})
	}
	if len(in.m) > maxInterned {
		t.Errorf("interner holds %d topologies, past its bound %d", len(in.m), maxInterned)
	}
}

// TestShrunkObjectsPackTheirStrings: the strings a shrunk Service or
// EndpointSlice keeps are cut from one block of its own, not kept one by
// one from the API object.
func TestShrunkObjectsPackTheirStrings(t *testing.T) {
	inOneBlock := func(what string, strs ...string) {
		t.Helper()
		start, end := uintptr(math.MaxUint), uintptr(0)
		size := 0
		for _, s := range strs {
			if s == "" {
				continue
			}
			p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
			start, end, size = min(start, p), max(end, p+uintptr(len(s))), size+len(s)
		}
		if int(end-start) != size {
			t.Errorf("%s: %d bytes of strings span %d bytes of memory", what, size, end-start)
		}
	}
	_, slices := memoryFixture(1, 5)
	sl := slices[0]
	strs := []string{sl.Namespace, sl.Name, sl.Service, sl.ResourceVersion, sl.Ports[0].Name}
	for _, e := range sl.Endpoints {
		strs = append(strs, e.ids)
	}
	inOneBlock("EndpointSlice", strs...)

	svc := ServiceFromAPI(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", ResourceVersion: "42",
			Annotations: map[string]string{AnnotationPolicy: "least-loaded", AnnotationWeights: "web-0=2"}},
		Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "metrics", Port: 9090}}},
	})
	inOneBlock("Service", svc.Namespace, svc.Name, svc.Policy, svc.Weights, svc.ResourceVersion, svc.Ports[0].Name, svc.Ports[1].Name)
}

// TestSnapshotKeepsNoRoomForOtherServices: the arrays a snapshot cuts its
// Services' candidates from are sized for headless Services' endpoints,
// not for those of a large ClusterIP Service beside them.
func TestSnapshotKeepsNoRoomForOtherServices(t *testing.T) {
	svcs, slices := memoryFixture(2, 25000)
	svcs[0].Kind, svcs[0].ClusterIPs = KindClusterIP, []netip.Addr{netip.MustParseAddr("10.96.0.1")}
	slices[1].Endpoints = slices[1].Endpoints[:1]
	opts := testOptions(t)
	opts.Zones = []string{"cluster.local.", "cluster.example."}
	h0 := memtest.LiveHeap()
	snap := Build(opts, 1, svcs, slices)
	slices[0] = nil // the ClusterIP Service's endpoints; the snapshot does not need them
	if grown := memtest.LiveHeap() - h0; grown > 1<<20 {
		t.Errorf("a snapshot of one headless endpoint beside a ClusterIP Service of 25,000 endpoints holds %d KB", grown>>10)
	}
	runtime.KeepAlive(snap)
}

// TestRRBufForgetsOldSnapshots: records an RRBuf made for an answer point
// into their snapshot; once reset and reused for a newer snapshot's
// smaller answer, none may keep the old one alive.
func TestRRBufForgetsOldSnapshots(t *testing.T) {
	var buf RRBuf
	build := func() (*Choice, weak.Pointer[member]) {
		svcs, slices := memoryFixture(1, 50)
		snap := Build(testOptions(t), 1, svcs, slices)
		_, n := snap.Lookup("svc-0.team-0.svc.cluster.local.")
		return n.ChosenSRV, weak.Make(&n.ChosenSRV.Set.members[0])
	}
	old, gone := build()
	buf.Reset()
	for _, i := range old.In {
		old.AppendRRs(nil, i, &buf)
		old.AppendGlue(nil, i, &buf)
	}
	old = nil
	cur, _ := build()
	buf.Reset()
	cur.AppendRRs(nil, 0, &buf)
	runtime.GC()
	runtime.GC()
	if gone.Value() != nil {
		t.Error("a reset RRBuf keeps a replaced snapshot's members alive")
	}
	runtime.KeepAlive(cur)
	runtime.KeepAlive(&buf)
}
