package zone

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hdns-dev/hdns/internal/dnstest"
	"github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/policy"
)

func testOptions(t testing.TB) *Options {
	t.Helper()
	policies, err := policy.NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	return &Options{
		Zones:        []string{"cluster.local."},
		ReverseZones: []string{"in-addr.arpa.", "ip6.arpa."},
		TTL:          5,
		Policies:     policies,
	}
}

// shrunk shrinks API objects (from package fixture) as the Kubernetes
// source's informers do.
func shrunk(t testing.TB, objects ...runtime.Object) ([]*Service, []*EndpointSlice) {
	t.Helper()
	var svcs []*Service
	var slices []*EndpointSlice
	for _, o := range objects {
		switch o := o.(type) {
		case *corev1.Service:
			svcs = append(svcs, ServiceFromAPI(o))
		case *discoveryv1.EndpointSlice:
			slices = append(slices, EndpointSliceFromAPI(o))
		default:
			t.Fatalf("shrunk: %T is neither a Service nor an EndpointSlice", o)
		}
	}
	return svcs, slices
}

// policyAnnotation returns the annotations that choose a policy chain.
func policyAnnotation(chain string) map[string]string {
	return map[string]string{AnnotationPolicy: chain}
}

// chosen lists a choice's candidates' records in spec order.
func chosen(c *Choice) []string {
	var rrs []dns.RR
	var buf RRBuf
	for _, i := range c.In {
		rrs = c.AppendRRs(rrs, i, &buf)
	}
	return dnstest.Strings(rrs)
}

// dualStack is a headless Service (with an invalid policy annotation)
// over a Pod of each kind: named by hostname, by a Pod name that is a
// label, and by a Pod name that is not, in an IPv6 and an IPv4 slice.
func dualStack(t testing.TB) ([]*Service, []*EndpointSlice) {
	return shrunk(t, dualStackObjects()...)
}

func dualStackObjects() []runtime.Object {
	return []runtime.Object{
		fixture.Service{Namespace: "data", Name: "db", Headless: true, Annotations: policyAnnotation("no-such-step")}.API(),
		fixture.EndpointSlice{Namespace: "data", Name: "db-b", Service: "db", Endpoints: []fixture.Endpoint{
			{Address: "fd00::1", Pod: "db-0", Hostname: "db-0"},
			{Address: "fd00::2", Pod: "pod-two"},
		}}.API(),
		fixture.EndpointSlice{Namespace: "data", Name: "db-a", Service: "db", Endpoints: []fixture.Endpoint{
			{Address: "10.0.0.1", Pod: "db-0", Hostname: "db-0"},
			{Address: "10.0.0.2", Pod: "pod-two"},
			{Address: "10.0.0.3", Pod: "Pod.With.Dots"},
		}}.API(),
		// The same address in a second slice (as during a slice
		// migration) is one candidate.
		fixture.EndpointSlice{Namespace: "data", Name: "db-c", Service: "db", Endpoints: []fixture.Endpoint{
			{Address: "10.0.0.2", Pod: "pod-two"},
		}}.API(),
	}
}

func TestBuildMergesFamiliesAndNamesEndpoints(t *testing.T) {
	for _, podNames := range []bool{false, true} {
		opts := testOptions(t)
		opts.EndpointPodNames = podNames
		svcs, sl := dualStack(t)
		snap := Build(opts, 7, svcs, sl)
		_, n := snap.Lookup("db.data.svc.cluster.local.")
		if n == nil || n.ChosenA == nil || n.ChosenAAAA == nil {
			t.Fatalf("podNames=%v: node %+v, want A and AAAA choices", podNames, n)
		}
		set := n.ChosenA.Set
		var hosts []string
		for i := range set.Candidates {
			hosts = append(hosts, set.Hostname(i))
		}
		// Slices sort by name: db-a (IPv4) first, then db-b merges into
		// the same Pods.
		want := []string{"db-0", "10-0-0-2", "10-0-0-3"}
		if podNames {
			want = []string{"db-0", "pod-two", "10-0-0-3"} // a Pod name with dots is no label
		}
		if !slices.Equal(hosts, want) {
			t.Errorf("podNames=%v: hostnames %v, want %v", podNames, hosts, want)
		}
		if got := chosen(n.ChosenA); len(got) != 3 {
			t.Errorf("A candidates %v, want 3 (duplicate address merged)", got)
		}
		if !slices.Equal(n.ChosenAAAA.In, []int{0, 1}) {
			t.Errorf("AAAA candidates %v, want the first two (merged with their IPv4)", n.ChosenAAAA.In)
		}
		_, h := snap.Lookup(want[1] + ".db.data.svc.cluster.local.")
		if h == nil || len(h.FixedA) != 1 || len(h.FixedAAAA) != 1 {
			t.Errorf("hostname %s: want one A and one AAAA, got %+v", want[1], h)
		}
		if set.PolicyErr == nil || set.Policy.String() != "ordered" {
			t.Errorf("bad policy annotation: err %v, policy %v; want an error and the default policy", set.PolicyErr, set.Policy)
		}
		if snap.Stats.Services != 1 || snap.Stats.Endpoints != 3 {
			t.Errorf("stats %+v", snap.Stats)
		}
	}
}

func TestBuildEmptyNonTerminals(t *testing.T) {
	svcs, sl := dualStack(t)
	snap := Build(testOptions(t), 1, svcs, sl)
	for _, name := range []string{"svc.cluster.local.", "data.svc.cluster.local.", "dns.cluster.local.",
		"ns.dns.cluster.local.", "0.0.10.in-addr.arpa.", "arpa." /* not in a zone */} {
		apex, n := snap.Lookup(name)
		if name == "arpa." {
			if apex != nil {
				t.Errorf("%s: in zone %s, want outside every zone", name, apex.Name)
			}
			continue
		}
		if n == nil {
			t.Errorf("%s does not exist; it has names below it (RFC 8020)", name)
		} else if n.FixedA != nil || n.ChosenA != nil || n.Rare().TXT != nil || n.PTR != nil {
			t.Errorf("%s has records: %+v", name, n)
		}
	}
	if _, n := snap.Lookup("other.svc.cluster.local."); n != nil {
		t.Error("a namespace without Services exists")
	}
}

func TestBuildIsIndependentOfInputOrder(t *testing.T) {
	svcs, sl := dualStack(t)
	a := Build(testOptions(t), 1, svcs, sl)
	slices.Reverse(sl)
	b := Build(testOptions(t), 1, svcs, sl)
	_, na := a.Lookup("db.data.svc.cluster.local.")
	_, nb := b.Lookup("db.data.svc.cluster.local.")
	if !slices.Equal(chosen(na.ChosenA), chosen(nb.ChosenA)) {
		t.Errorf("order depends on slice order:\n%v\n%v", chosen(na.ChosenA), chosen(nb.ChosenA))
	}
}

func TestReverseZonesLimitPTR(t *testing.T) {
	opts := testOptions(t)
	opts.ReverseZones = []string{"10.in-addr.arpa."}
	svcs, sl := dualStack(t)
	snap := Build(opts, 1, svcs, sl)
	if _, n := snap.Lookup("1.0.0.10.in-addr.arpa."); n == nil || len(n.PTR) != 1 || n.PTR[0].(*dns.PTR).Ptr != "db-0.db.data.svc.cluster.local." {
		t.Errorf("PTR for 10.0.0.1: %+v", n)
	}
	if apex, _ := snap.Lookup("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."); apex != nil {
		t.Error("ip6.arpa. answered though it is not a reverse zone")
	}
}

func TestCanonicalZone(t *testing.T) {
	for in, want := range map[string]string{"Cluster.Local": "cluster.local.", "lb.cluster.local.": "lb.cluster.local.", " x ": "x."} {
		got, err := CanonicalZone(in)
		if err != nil || got != want {
			t.Errorf("CanonicalZone(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := CanonicalZone("a..b"); err == nil {
		t.Error("CanonicalZone accepted a..b")
	}
}

func TestDashed(t *testing.T) {
	svcs, sl := shrunk(t,
		fixture.Service{Namespace: "ns6", Name: "s", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "ns6", Name: "s6", Service: "s", Endpoints: []fixture.Endpoint{{Address: "fd00:10::1"}}}.API(),
	)
	snap := Build(testOptions(t), 1, svcs, sl)
	if _, n := snap.Lookup("fd00-0010-0000-0000-0000-0000-0000-0001.s.ns6.svc.cluster.local."); n == nil || len(n.FixedAAAA) != 1 {
		t.Errorf("IPv6 endpoint without hostname: no dashed name, got %+v", n)
	}
}

func TestInZone(t *testing.T) {
	for _, tc := range []struct {
		name, zone string
		want       bool
	}{
		{"cluster.local.", "cluster.local.", true},
		{"a.cluster.local.", "cluster.local.", true},
		{"acluster.local.", "cluster.local.", false},
		{`x\.cluster.local.`, "cluster.local.", false}, // one label "x.cluster"
		{`x\\.cluster.local.`, "cluster.local.", true}, // label `x\` then cluster
		{`a\.b.cluster.local.`, "cluster.local.", true},
		{"local.", "cluster.local.", false},
		{"anything.", ".", true},
	} {
		if got := InZone(tc.name, tc.zone); got != tc.want {
			t.Errorf("InZone(%q, %q) = %v, want %v", tc.name, tc.zone, got, tc.want)
		}
	}
}

// TestNamesFitWireFormat builds a zone whose names approach 255 octets:
// no owner name or target may pass the limit, and the address records stay.
func TestNamesFitWireFormat(t *testing.T) {
	label := strings.Repeat("a", 63)
	opts := testOptions(t)
	opts.Zones = []string{strings.Repeat("z", 30) + "." + strings.Repeat("y", 37) + "."}
	name, namespace := "s"+label[:62], "n"+label[:62]
	svcs, sl := shrunk(t,
		fixture.Service{Namespace: namespace, Name: name, Headless: true, Ports: []fixture.Port{{Name: "http", Port: 80}}}.API(),
		fixture.EndpointSlice{Namespace: namespace, Name: "s", Service: name,
			Ports:     []fixture.Port{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			Endpoints: []fixture.Endpoint{{Address: "10.0.0.1", Hostname: label}},
		}.API(),
	)
	snap := Build(opts, 1, svcs, sl)
	snap.ptrs.each(func(addr netip.Addr, target string) {
		if !fits(target) {
			t.Errorf("PTR of %s points to a name of %d octets", addr, len(target)+1)
		}
	})
	snap.names.each(func(name string, n *Node) {
		if !fits(name) {
			t.Errorf("owner name of %d octets: %s", len(name)+1, name)
		}
		for _, rr := range append(append([]dns.RR{}, n.Rare().SRV...), n.PTR...) {
			var target string
			switch r := rr.(type) {
			case *dns.SRV:
				target = r.Target
			case *dns.PTR:
				target = r.Ptr
			}
			if !fits(target) {
				t.Errorf("%s points to a name of %d octets", name, len(target)+1)
			}
		}
	})
	owner := "s" + label[:62] + ".n" + label[:62] + ".svc." + opts.Zones[0]
	if _, n := snap.Lookup(owner); n == nil || n.ChosenA == nil || len(n.ChosenA.In) != 1 {
		t.Errorf("the Service lost its address record: %+v", n)
	}
	if _, err := CanonicalZone("."); err == nil {
		t.Error("CanonicalZone accepted the root")
	}
}

func TestPolicyErrorsAreReportedOncePerService(t *testing.T) {
	opts := testOptions(t)
	opts.Zones = []string{"cluster.local.", "lb.cluster.local."}
	svcs, sl := shrunk(t,
		fixture.Service{Namespace: "p", Name: "noendpoints", Headless: true, Annotations: policyAnnotation("fastest")}.API(),
		fixture.Service{Namespace: "p", Name: "weights", Headless: true,
			Annotations: map[string]string{AnnotationPolicy: "weighted", AnnotationWeights: "web-0=lots"}}.API(),
		fixture.EndpointSlice{Namespace: "p", Name: "w", Service: "weights", Endpoints: []fixture.Endpoint{{Address: "10.0.0.1"}}}.API(),
	)
	snap := Build(opts, 1, svcs, sl)
	got := map[string]string{}
	for _, pe := range snap.PolicyErrors {
		if _, dup := got[pe.Service]; dup {
			t.Errorf("%s reported twice", pe.Service)
		}
		got[pe.Service] = pe.Err.Error()
	}
	if !strings.Contains(got["p/noendpoints"], "fastest") {
		t.Errorf("a Service without endpoints: error %q, want it reported", got["p/noendpoints"])
	}
	if !strings.Contains(got["p/weights"], "every endpoint weighs 1") {
		t.Errorf("bad weights: error %q, want it to say what is served", got["p/weights"])
	}
	if _, n := snap.Lookup("weights.p.svc.cluster.local."); n == nil || n.ChosenA.Set.Policy.String() != "weighted" {
		t.Error("bad weights replaced the Service's policy")
	}
}

// TestJoiningPodStartsLevel: a Pod that joins a Service in a later build
// gets its peers' mean handout count (policy's seeding in Bind), not 0.
func TestJoiningPodStartsLevel(t *testing.T) {
	opts := testOptions(t)
	objects := func(pods ...string) ([]*Service, []*EndpointSlice) {
		slice := fixture.EndpointSlice{Namespace: "ns", Name: "web-1", Service: "web"}
		for i, p := range pods {
			slice.Endpoints = append(slice.Endpoints, fixture.Endpoint{Address: fmt.Sprintf("10.0.0.%d", i+1), Pod: p})
		}
		return shrunk(t, fixture.Service{Namespace: "ns", Name: "web", Headless: true, Annotations: policyAnnotation("least-loaded")}.API(), slice.API())
	}
	svcs, sl := objects("web-a", "web-b")
	Build(opts, 1, svcs, sl)
	opts.Policies.Ledger("ns/web-a").Add(10)
	opts.Policies.Ledger("ns/web-b").Add(20)
	svcs, sl = objects("web-a", "web-b", "web-c")
	Build(opts, 2, svcs, sl)
	if v := opts.Policies.Ledger("ns/web-c").Value(); math.Abs(v-15) > 0.5 {
		t.Errorf("joining Pod's handout count %v, want its peers' mean 15", v)
	}
}

// TestOwnNames checks the names of a headless Service's endpoints, which
// Lookup makes from the Service's members: each ready endpoint with a
// hostname of its own has its addresses; a hostname two endpoints share
// has both; a terminating endpoint offered to the Service name by drain
// has no name; and every such name counts in Stats.Names.
func TestOwnNames(t *testing.T) {
	svcs, eps := shrunk(t,
		fixture.Service{Namespace: "ns", Name: "web", Headless: true, Annotations: policyAnnotation("drain")}.API(),
		fixture.EndpointSlice{Namespace: "ns", Name: "web-a", Service: "web",
			Ports: []fixture.Port{{Name: "http", Port: 80}},
			Endpoints: []fixture.Endpoint{
				{Address: "10.0.0.1", Hostname: "web-0"},
				{Address: "10.0.0.2", Hostname: "twin"},
				{Address: "10.0.0.3", Hostname: "twin"},
				{Address: "10.0.0.4", Hostname: "leaving", Ready: new(false), Serving: new(true), Terminating: new(true)},
				{Address: "10.0.0.5"},
			},
		}.API(),
	)
	snap := Build(testOptions(t), 1, svcs, eps)
	const svc = ".web.ns.svc.cluster.local."
	want := map[string][]string{
		"web-0" + svc:    {"web-0.web.ns.svc.cluster.local. 5 IN A 10.0.0.1"},
		"twin" + svc:     {"twin.web.ns.svc.cluster.local. 5 IN A 10.0.0.2", "twin.web.ns.svc.cluster.local. 5 IN A 10.0.0.3"},
		"10-0-0-5" + svc: {"10-0-0-5.web.ns.svc.cluster.local. 5 IN A 10.0.0.5"},
		"leaving" + svc:  nil,
		"web-1" + svc:    nil,
		"x.web-0" + svc:  nil,
	}
	for name, records := range want {
		_, n := snap.Lookup(name)
		if records == nil {
			if n != nil {
				t.Errorf("%s exists: %+v", name, n)
			}
			continue
		}
		if n == nil {
			t.Errorf("%s does not exist", name)
			continue
		}
		got := dnstest.Strings(n.FixedA)
		if !slices.Equal(got, records) || len(n.FixedAAAA) != 0 || n.ChosenA != nil || n.ChosenSRV != nil {
			t.Errorf("%s: A %q AAAA %v, want A %q and nothing else", name, got, n.FixedAAAA, records)
		}
	}
	_, n := snap.Lookup(strings.TrimPrefix(svc, "."))
	if n == nil || n.ChosenA == nil || len(n.ChosenA.In) != 5 {
		t.Fatalf("the Service name should offer all five endpoints: %+v", n)
	}
	// The forward apex, ns.dns. and dns.; dns-version.; the two reverse
	// apexes; svc., ns.svc. and the Service; _tcp. and _http._tcp.; three
	// own names (twin is one name); four PTR names (not leaving's).
	if got, want := snap.Stats.Names, 3+1+2+3+2+3+4; got != want {
		t.Errorf("Stats.Names = %d, want %d", got, want)
	}
}

// TestRepeatedPortsAnswerOnce: a slice that lists a port twice (manifests
// allow it) still gives one SRV record per endpoint and port.
func TestRepeatedPortsAnswerOnce(t *testing.T) {
	svcs, eps := shrunk(t,
		fixture.Service{Namespace: "ns", Name: "web", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "ns", Name: "web-a", Service: "web",
			Ports:     []fixture.Port{{Name: "http", Port: 80}, {Name: "http", Port: 80}},
			Endpoints: []fixture.Endpoint{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}},
		}.API(),
	)
	snap := Build(testOptions(t), 1, svcs, eps)
	for _, name := range []string{"web.ns.svc.cluster.local.", "_http._tcp.web.ns.svc.cluster.local."} {
		_, n := snap.Lookup(name)
		if n == nil || n.ChosenSRV == nil {
			t.Fatalf("%s: no SRV choice", name)
		}
		if got := chosen(n.ChosenSRV); len(got) != 2 {
			t.Errorf("%s: SRV records %q, want one per endpoint", name, got)
		}
	}
}

// TestPodTargetWithoutName: a targetRef to a Pod without a name is no Pod,
// so such endpoints are not merged or keyed as one.
func TestPodTargetWithoutName(t *testing.T) {
	ready := true
	sl := EndpointSliceFromAPI(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-a", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, TargetRef: &corev1.ObjectReference{Kind: "Pod"}},
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "web-1"}},
		},
	})
	if got := []string{sl.Endpoints[0].PodKey(), sl.Endpoints[1].PodKey()}; got[0] != "" || got[1] != "ns/web-1" {
		t.Errorf("PodKeys %q, want none for the nameless targetRef and ns/web-1", got)
	}
}

// TestRecordsFromEitherFamilysEndpoint: a dual-stack Pod whose IPv6 slice
// sorts first is one candidate made from two endpoints. Its records, its
// own name (spelled from its IPv4 address) and its PTR records take each
// address from the endpoint that holds it.
func TestRecordsFromEitherFamilysEndpoint(t *testing.T) {
	pg := []fixture.Port{{Name: "pg", Port: 5432}}
	svcs, eps := shrunk(t,
		fixture.Service{Namespace: "ns", Name: "db", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "ns", Name: "db-a", Service: "db", Ports: pg, Endpoints: []fixture.Endpoint{{Address: "fd00::9", Pod: "db-0"}}}.API(),
		fixture.EndpointSlice{Namespace: "ns", Name: "db-b", Service: "db", Ports: pg, Endpoints: []fixture.Endpoint{{Address: "10.0.0.9", Pod: "db-0"}}}.API(),
	)
	snap := Build(testOptions(t), 1, svcs, eps)
	const own = "10-0-0-9.db.ns.svc.cluster.local."
	records := func(name string, qtype uint16) []string {
		var buf RRBuf
		_, n := snap.LookupInto(name, &buf)
		if n == nil {
			return nil
		}
		var rrs []dns.RR
		switch {
		case qtype == dns.TypeA && n.ChosenA != nil:
			rrs = n.ChosenA.AppendRRs(nil, n.ChosenA.In[0], &buf)
		case qtype == dns.TypeAAAA && n.ChosenAAAA != nil:
			rrs = n.ChosenAAAA.AppendRRs(nil, n.ChosenAAAA.In[0], &buf)
		case qtype == dns.TypeSRV && n.ChosenSRV != nil:
			rrs = n.ChosenSRV.AppendRRs(nil, n.ChosenSRV.In[0], &buf)
			rrs = n.ChosenSRV.AppendGlue(rrs, n.ChosenSRV.In[0], &buf)
		case qtype == dns.TypeA:
			rrs = n.FixedA
		case qtype == dns.TypeAAAA:
			rrs = n.FixedAAAA
		case qtype == dns.TypePTR:
			rrs = n.PTR
		}
		return dnstest.Strings(rrs)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  []string
	}{
		{name: "db.ns.svc.cluster.local.", qtype: dns.TypeA, want: []string{"db.ns.svc.cluster.local. 5 IN A 10.0.0.9"}},
		{name: "db.ns.svc.cluster.local.", qtype: dns.TypeAAAA, want: []string{"db.ns.svc.cluster.local. 5 IN AAAA fd00::9"}},
		{name: own, qtype: dns.TypeA, want: []string{own + " 5 IN A 10.0.0.9"}},
		{name: own, qtype: dns.TypeAAAA, want: []string{own + " 5 IN AAAA fd00::9"}},
		{name: "db.ns.svc.cluster.local.", qtype: dns.TypeSRV, want: []string{
			"db.ns.svc.cluster.local. 5 IN SRV 0 100 5432 " + own, own + " 5 IN A 10.0.0.9", own + " 5 IN AAAA fd00::9"}},
		{name: "9.0.0.10.in-addr.arpa.", qtype: dns.TypePTR, want: []string{"9.0.0.10.in-addr.arpa. 5 IN PTR " + own}},
		{name: "9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
			want: []string{"9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR " + own}},
	} {
		if got := records(tc.name, tc.qtype); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s:\n got %q\nwant %q", tc.name, dns.TypeToString[tc.qtype], got, tc.want)
		}
	}
}

// TestRRBufNamesOutliveGrowth: the names an RRBuf spells for one answer
// stay as they were while it grows to hold the rest.
func TestRRBufNamesOutliveGrowth(t *testing.T) {
	svcs, slices := memoryFixture(1, 200)
	snap := Build(testOptions(t), 1, svcs, slices)
	_, n := snap.Lookup("svc-0.team-0.svc.cluster.local.")
	var buf RRBuf
	var rrs []dns.RR
	for _, i := range n.ChosenSRV.In {
		rrs = n.ChosenSRV.AppendRRs(rrs, i, &buf)
		rrs = n.ChosenSRV.AppendGlue(rrs, i, &buf)
	}
	if len(rrs) != 400 {
		t.Fatalf("%d records, want an SRV and an A for each of 200 endpoints", len(rrs))
	}
	for k := 0; k < len(rrs); k += 2 {
		i := n.ChosenSRV.In[k/2]
		want := fmt.Sprintf("10-0-0-%d.svc-0.team-0.svc.cluster.local.", i)
		srv, a := rrs[k].(*dns.SRV), rrs[k+1].(*dns.A)
		if srv.Target != want || a.Hdr.Name != want || a.A.String() != fmt.Sprintf("10.0.0.%d", i) {
			t.Errorf("endpoint %d: SRV target %s, glue %s %s; want %s and 10.0.0.%d", i, srv.Target, a.Hdr.Name, a.A, want, i)
		}
	}
}

// TestWeightsKeepTheirSign: weights outside float32's range stay finite
// and positive, and a zero weight stays zero (last).
func TestWeightsKeepTheirSign(t *testing.T) {
	svcs, eps := shrunk(t,
		fixture.Service{Namespace: "p", Name: "w", Headless: true,
			Annotations: map[string]string{AnnotationPolicy: "weighted", AnnotationWeights: "huge=1e300, tiny=1e-60, none=0"}}.API(),
		fixture.EndpointSlice{Namespace: "p", Name: "w-a", Service: "w", Endpoints: []fixture.Endpoint{
			{Address: "10.0.0.1", Hostname: "huge"},
			{Address: "10.0.0.2", Hostname: "tiny"},
			{Address: "10.0.0.3", Hostname: "none"},
		}}.API(),
	)
	snap := Build(testOptions(t), 1, svcs, eps)
	_, n := snap.Lookup("w.p.svc.cluster.local.")
	c := n.ChosenA.Set.Candidates
	if w := float64(c[0].Weight); math.IsInf(w, 0) || w < 1e38 {
		t.Errorf("weight 1e300 held as %g, want the largest finite float32", w)
	}
	if c[1].Weight <= 0 || c[2].Weight != 0 {
		t.Errorf("weights 1e-60 and 0 held as %g and %g, want positive and zero", c[1].Weight, c[2].Weight)
	}
}

// TestEndpointHoldsItsIdentities: an Endpoint gives back the address, Pod
// key and hostname it was made with, from its packed form.
func TestEndpointHoldsItsIdentities(t *testing.T) {
	long := strings.Repeat("p", math.MaxUint16+1)
	for _, tc := range []struct {
		addr             string
		podKey, hostname string
		wantKey          string
	}{
		{addr: "10.0.0.1", podKey: "ns/web-0", hostname: "web-0", wantKey: "ns/web-0"},
		{addr: "fd00::1", podKey: "ns/db-1", wantKey: "ns/db-1"},
		{addr: "::ffff:10.0.0.2", hostname: "h"},
		{podKey: "ns/nowhere", wantKey: "ns/nowhere"},
		{addr: "10.0.0.3", podKey: long, hostname: "x"},
	} {
		var addr netip.Addr
		if tc.addr != "" {
			addr = netip.MustParseAddr(tc.addr)
		}
		e := NewEndpoint(addr, tc.podKey, tc.hostname)
		if e.Address() != addr.Unmap() || e.PodKey() != tc.wantKey || e.Hostname() != tc.hostname {
			t.Errorf("NewEndpoint(%v, %.20q, %q) holds %v, %.20q, %q", addr, tc.podKey, tc.hostname, e.Address(), e.PodKey(), e.Hostname())
		}
		wantLen := 0
		switch {
		case addr.Unmap().Is4():
			wantLen = 4
		case addr.IsValid():
			wantLen = 16
		}
		if got := len(e.ip()); got != wantLen {
			t.Errorf("%v: %d address bytes, want %d", addr, got, wantLen)
		}
	}
}
