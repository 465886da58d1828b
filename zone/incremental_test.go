package zone

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
)

// TestIncrementalMatchesFullBuild drives a Publisher with random
// sequences of changes and, after each, checks that the snapshot it
// published by rebuilding the Services the change touched answers every
// name exactly as a full Build of the same objects does.
func TestIncrementalMatchesFullBuild(t *testing.T) {
	for seed := range uint64(16) {
		r := rand.New(rand.NewPCG(seed, 17))
		data := make([]byte, 500)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		t.Run(fmt.Sprint(seed), func(t *testing.T) { checkIncremental(t, data) })
	}
}

// FuzzIncremental is TestIncrementalMatchesFullBuild with the sequence of
// changes read from the fuzzer's bytes.
func FuzzIncremental(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("\x01\x02\x03\x02\x02\x05\x02\x03\x01\x06\x00\x02\x07\x07"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 2000 {
			return
		}
		checkIncremental(t, data)
	})
}

// diffBytes reads a sequence of changes' choices; past its end, zeros.
type diffBytes struct{ data []byte }

func (d *diffBytes) next(n int) int {
	if len(d.data) == 0 {
		return 0
	}
	b := d.data[0]
	d.data = d.data[1:]
	return int(b) % n
}

// diffWorld is the objects a differential run has made, as a source
// would hold them.
type diffWorld struct {
	services map[serviceKey]*Service
	slices   map[serviceKey]*EndpointSlice // by namespace and slice name
}

var (
	diffNamespaces = []string{"a", "b"}
	diffServices   = []string{"s0", "s1", "s2"}
	diffSlices     = []string{"e0", "e1", "e2", "e3"}
	diffAddrs      = []string{"10.0.0.1", "10.0.0.2", "10.0.1.1", "10.1.0.1", "fd00::1", "fd00::2", "fd00:1::1"}
	diffPods       = []string{"", "p0", "p1", "p2"}
	diffHosts      = []string{"", "h0", "h1"}
	// diffTopologies: none, a place only, and hints of each kind, which
	// add a locality step to the Service's chain.
	diffTopologies = []Topology{{}, {NodeName: "n0", Zone: "z0"}, {NodeName: "n1", Zone: "z1", ForZones: "z1"},
		{NodeName: "n0", Zone: "z0", ForZones: "z0 z1", ForNodes: "n0"}}
	diffPorts = [][]Port{nil, {{Name: "http", Protocol: "tcp", Port: 80}},
		{{Name: "http", Protocol: "tcp", Port: 80}, {Name: "dns", Protocol: "udp", Port: 53}, {Protocol: "tcp", Port: 9}}}
)

func checkIncremental(t *testing.T, data []byte) {
	in := &diffBytes{data: data}
	opts := diffOptions(t, in.next(2) == 1)
	p := NewPublisher(opts, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	w := &diffWorld{services: map[serviceKey]*Service{}, slices: map[serviceKey]*EndpointSlice{}}
	p.Replace(nil, nil)
	p.Rebuild()
	for step := 0; len(in.data) > 0; step++ {
		what := w.change(p, in)
		p.Rebuild()
		if err := w.compare(p.Snapshot(), opts); err != nil {
			t.Fatalf("after change %d (%s): %v", step, what, err)
		}
	}
}

func diffOptions(t testing.TB, podNames bool) *Options {
	c, err := policy.NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	return &Options{Zones: []string{"cluster.local.", "example."}, ReverseZones: []string{"in-addr.arpa.", "ip6.arpa."},
		TTL: 5, EndpointPodNames: podNames, Policies: c}
}

// change makes one random change, hands it to p and says what it was.
func (w *diffWorld) change(p *Publisher, in *diffBytes) string {
	ns := diffNamespaces[in.next(len(diffNamespaces))]
	switch in.next(8) {
	case 0, 1:
		svc := diffService(in, ns)
		w.services[keyOf(svc)] = svc
		p.Apply(ServiceChange(OpUpsert, svc))
		return fmt.Sprintf("upsert service %s/%s kind %d", ns, svc.Name, svc.Kind)
	case 2:
		k := serviceKey{ns, diffServices[in.next(len(diffServices))]}
		delete(w.services, k)
		p.Apply(ServiceChange(OpDelete, &Service{Namespace: ns, Name: k.Name}))
		return "delete service " + k.Namespace + "/" + k.Name
	case 3, 4:
		s := diffSlice(in, ns)
		w.slices[serviceKey{ns, s.Name}] = s
		p.Apply(SliceChange(OpUpsert, s))
		return fmt.Sprintf("upsert slice %s/%s of %s", ns, s.Name, s.Service)
	case 5:
		k := serviceKey{ns, diffSlices[in.next(len(diffSlices))]}
		delete(w.slices, k)
		p.Apply(SliceChange(OpDelete, &EndpointSlice{Namespace: ns, Name: k.Name}))
		return "delete slice " + k.Namespace + "/" + k.Name
	case 6:
		return w.flip(p, in, ns)
	}
	if in.next(2) == 0 {
		var changes []Change
		for k, svc := range w.services {
			if k.Namespace == ns {
				delete(w.services, k)
				changes = append(changes, ServiceChange(OpDelete, svc))
			}
		}
		for k, s := range w.slices {
			if k.Namespace == ns {
				delete(w.slices, k)
				changes = append(changes, SliceChange(OpDelete, s))
			}
		}
		p.Apply(changes...)
		return "empty namespace " + ns
	}
	services, slices := w.objects()
	p.Replace(services, slices)
	return "replace"
}

// flip turns over the conditions of one endpoint of a slice that exists,
// as a kubelet's probe does: the slice's only change.
func (w *diffWorld) flip(p *Publisher, in *diffBytes, ns string) string {
	k := serviceKey{ns, diffSlices[in.next(len(diffSlices))]}
	old := w.slices[k]
	if old == nil || len(old.Endpoints) == 0 {
		return "flip in missing slice " + k.Namespace + "/" + k.Name
	}
	s := *old
	s.Endpoints = slices.Clone(s.Endpoints)
	e := &s.Endpoints[in.next(len(s.Endpoints))]
	e.Ready, e.Serving, e.Terminating = !e.Ready, in.next(2) == 0, in.next(3) == 0
	w.slices[k] = &s
	p.Apply(SliceChange(OpUpsert, &s))
	return fmt.Sprintf("flip an endpoint of slice %s/%s of %s", ns, s.Name, s.Service)
}

func diffService(in *diffBytes, ns string) *Service {
	svc := &Service{Namespace: ns, Name: diffServices[in.next(len(diffServices))], Ports: diffPorts[in.next(len(diffPorts))]}
	switch in.next(4) {
	case 0:
		svc.Kind = KindClusterIP
		for range 1 + in.next(2) {
			svc.ClusterIPs = append(svc.ClusterIPs, netip.MustParseAddr(diffAddrs[in.next(len(diffAddrs))]))
		}
	case 1:
		svc.Kind, svc.ExternalName = KindExternalName, "ext.example.org"
	default:
		svc.Kind = KindHeadless
	}
	if in.next(4) == 0 {
		svc.Policy = "no-such-step"
	}
	return svc
}

func diffSlice(in *diffBytes, ns string) *EndpointSlice {
	s := &EndpointSlice{Namespace: ns, Name: diffSlices[in.next(len(diffSlices))],
		Service: diffServices[in.next(len(diffServices))], AddressType: "IPv4", Ports: diffPorts[in.next(len(diffPorts))]}
	v6 := in.next(2) == 1
	if v6 {
		s.AddressType = "IPv6"
	}
	for range in.next(4) {
		a := netip.MustParseAddr(diffAddrs[in.next(len(diffAddrs))])
		pod := diffPods[in.next(len(diffPods))]
		if pod != "" {
			pod = ns + "/" + pod
		}
		e := NewEndpoint(a, pod, diffHosts[in.next(len(diffHosts))])
		e.Ready, e.Serving, e.Terminating = in.next(4) != 0, in.next(2) == 0, in.next(3) == 0
		if t := diffTopologies[in.next(len(diffTopologies))]; t != (Topology{}) {
			e.Topology = topologies.intern(t)
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

// objects returns the world's objects, Services in the store's order.
func (w *diffWorld) objects() ([]*Service, []*EndpointSlice) {
	var services []*Service
	for _, svc := range w.services {
		services = append(services, svc)
	}
	slices.SortFunc(services, func(a, b *Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var out []*EndpointSlice
	for _, s := range w.slices {
		out = append(out, s)
	}
	return services, out
}

// compare checks that got answers as a full Build of the world's objects
// does.
func (w *diffWorld) compare(got *Snapshot, opts *Options) error {
	services, slices := w.objects()
	fresh := *opts
	fresh.Policies, _ = policy.NewCompiler("ordered")
	want := Build(&fresh, got.Serial, services, slices)
	if got.Stats != want.Stats {
		return fmt.Errorf("stats %+v, want %+v", got.Stats, want.Stats)
	}
	if g, w := fmt.Sprint(got.PolicyErrors), fmt.Sprint(want.PolicyErrors); g != w {
		return fmt.Errorf("policy errors %s, want %s", g, w)
	}
	for _, name := range diffNames(got, want, opts) {
		if g, w := describe(got, name), describe(want, name); g != w {
			return fmt.Errorf("%s:\n got %s\nwant %s", name, g, w)
		}
	}
	return nil
}

// diffNames lists the names to ask both snapshots: every stored name of
// either, the names every Service and endpoint could have, every
// address's reverse name and its ancestors, and a few that never exist.
func diffNames(a, b *Snapshot, opts *Options) []string {
	seen := map[string]bool{}
	add := func(name string) { seen[name] = true }
	a.names.each(func(name string, _ *Node) { add(name) })
	b.names.each(func(name string, _ *Node) { add(name) })
	for _, z := range opts.Zones {
		add("svc." + z)
		add("nothing." + z)
		for _, ns := range diffNamespaces {
			add(ns + ".svc." + z)
			for _, name := range diffServices {
				owner := name + "." + ns + ".svc." + z
				for _, label := range []string{"", "_tcp.", "_udp.", "_http._tcp.", "_dns._udp.", "h0.", "h1.", "p0.", "p1.", "p2.", "x."} {
					add(label + owner)
				}
				for _, addr := range diffAddrs {
					add(dashed(netip.MustParseAddr(addr)) + "." + owner)
				}
			}
		}
	}
	for _, addr := range diffAddrs {
		rev, _ := dns.ReverseAddr(addr)
		for p := rev; p != "" && p != "."; p = parent(p) {
			add(p)
		}
	}
	add("9.9.9.10.in-addr.arpa.")
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// describe is everything an answer to name could say, for every query
// type: the zone and its negative SOA, whether the name exists, and its
// records, with the candidates of a choice in the order of its list.
func describe(s *Snapshot, name string) string {
	var buf RRBuf
	apex, n := s.LookupInto(name, &buf)
	switch {
	case apex == nil:
		return "REFUSED"
	case n == nil:
		return "NXDOMAIN " + apex.NegativeSOA.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "zone %s %s\n", apex.SOA, apex.NegativeSOA)
	if c := n.CNAME(); c != nil {
		fmt.Fprintf(&b, "CNAME %s\n", c)
	}
	rare := n.Rare()
	for _, rrs := range [][]dns.RR{n.FixedA, n.FixedAAAA, n.PTR, rare.SRV, rare.TXT, rare.NS, rare.SOA, rare.Extra} {
		for _, rr := range rrs {
			fmt.Fprintf(&b, "%s\n", rr)
		}
	}
	for _, c := range []*Choice{n.ChosenA, n.ChosenAAAA, n.ChosenSRV} {
		describeChoice(&b, c)
	}
	return b.String()
}

func describeChoice(b *strings.Builder, c *Choice) {
	if c == nil {
		return
	}
	var buf RRBuf
	set := c.Set
	fmt.Fprintf(b, "choice %s %d %s %s ttl %d err %v\n", c.Owner, c.Qtype, set.Policy, set.Namespace+"/"+set.Service, set.TTL, set.PolicyErr)
	for _, i := range c.In {
		rrs := c.AppendRRs(nil, i, &buf)
		if c.Glue() {
			rrs = c.AppendGlue(rrs, i, &buf)
		}
		e := &set.Candidates[i]
		fmt.Fprintf(b, "  %v repeat %v %+v %q at %d/%d hints %v\n", rrs, c.Glue() && c.MayRepeat(i), e.Key, set.Hostname(i), e.Node, e.Zone, e.Hints)
	}
}
