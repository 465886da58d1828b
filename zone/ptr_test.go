package zone

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/internal/fixture"
)

func TestParseReverse(t *testing.T) {
	tests := []struct {
		name string
		want string // "" when it must not parse
	}{
		{name: "1.0.0.10.in-addr.arpa.", want: "10.0.0.1/32"},
		{name: "255.2.1.10.in-addr.arpa.", want: "10.1.2.255/32"},
		{name: "2.1.10.in-addr.arpa.", want: "10.1.2.0/24"},
		{name: "10.in-addr.arpa.", want: "10.0.0.0/8"},
		{name: "in-addr.arpa.", want: "0.0.0.0/0"},
		{name: "ip6.arpa.", want: "::/0"},
		{name: "d.f.ip6.arpa.", want: "fd00::/8"},
		{name: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", want: "fd00::1/128"},
		{name: "b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", want: "2001:db8::ab:0:0/96"},
		{name: "01.0.0.10.in-addr.arpa."},              // not how an octet is written
		{name: "256.0.0.10.in-addr.arpa."},             // not an octet
		{name: "1.1.0.0.10.in-addr.arpa."},             // more labels than octets
		{name: "x.0.0.10.in-addr.arpa."},               // not a number
		{name: "1..0.10.in-addr.arpa."},                // an empty label
		{name: ".in-addr.arpa."},                       // an empty label
		{name: "1.0.0.10in-addr.arpa."},                // no boundary
		{name: "10.d.f.ip6.arpa."},                     // a nibble is one digit
		{name: "g.f.ip6.arpa."},                        // not hex
		{name: "db-0.db.data.svc.cluster.local."},      // forward
		{name: strings.Repeat("0.", 33) + "ip6.arpa."}, // more nibbles than the address
	}
	for _, tt := range tests {
		p, ok := parseReverse(tt.name)
		switch {
		case tt.want == "" && ok:
			t.Errorf("%s parsed as %v; want no prefix", tt.name, p)
		case tt.want != "" && (!ok || p.String() != tt.want):
			t.Errorf("%s: %v %v; want %s", tt.name, p, ok, tt.want)
		}
	}
	// Every name dns.ReverseAddr writes, and each ancestor down to the
	// reverse zone, parses back to the address's prefix.
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		for _, a := range []netip.Addr{netip.AddrFrom16(b), netip.AddrFrom4([4]byte(b[:4]))} {
			rev, err := dns.ReverseAddr(a.String())
			if err != nil {
				t.Fatal(err)
			}
			bits := a.BitLen()
			for name := rev; strings.Count(name, ".") > 2; name = parent(name) {
				p, ok := parseReverse(name)
				want := netip.PrefixFrom(a, bits).Masked()
				if !ok || p != want {
					t.Fatalf("%s: %v %v; want %v", name, p, ok, want)
				}
				if a.Is4() {
					bits -= 8
				} else {
					bits -= 4
				}
			}
		}
	}
}

// TestPTRIndex: a full reverse name has the PTR records of its address,
// in the order they were added and once each; each ancestor down to the
// reverse zone exists, empty (RFC 8020); other reverse names do not.
func TestPTRIndex(t *testing.T) {
	svcs, sl := shrunk(t,
		fixture.Service{Namespace: "ns", Name: "web", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "ns", Name: "web-1", Service: "web", Endpoints: []fixture.Endpoint{
			{Address: "10.1.2.3", Hostname: "a"},
			{Address: "10.1.2.4", Hostname: "b"},
		}}.API(),
		fixture.EndpointSlice{Namespace: "ns", Name: "web-2", Service: "web", Endpoints: []fixture.Endpoint{
			{Address: "fd00::3", Hostname: "a"},
		}}.API(),
		fixture.Service{Namespace: "ns", Name: "api", Headless: true}.API(),
		fixture.EndpointSlice{Namespace: "ns", Name: "api-1", Service: "api", Endpoints: []fixture.Endpoint{
			{Address: "10.1.2.3", Hostname: "z"},
			{Address: "10.1.2.3", Hostname: "z"},
		}}.API(),
	)
	opts := testOptions(t)
	snap := Build(opts, 1, svcs, sl)
	ptrs := func(name string) (exists bool, targets []string) {
		apex, n := snap.Lookup(name)
		if n == nil {
			return false, nil
		}
		if apex == nil || n.Apex != apex || !strings.HasSuffix(name, apex.Name) {
			t.Errorf("%s: apex %v, node's apex %v", name, apex, n.Apex)
		}
		for _, rr := range n.PTR {
			p := rr.(*dns.PTR)
			if p.Hdr.Name != name || p.Hdr.Ttl != opts.TTL || p.Hdr.Class != dns.ClassINET {
				t.Errorf("%s: record %s", name, p)
			}
			targets = append(targets, p.Ptr)
		}
		return true, targets
	}
	tests := []struct {
		name    string
		exists  bool
		targets []string
	}{
		// An address's targets come in Service order (namespace, name),
		// whatever order Build is given the Services in.
		{name: "3.2.1.10.in-addr.arpa.", exists: true, targets: []string{"z.api.ns.svc.cluster.local.", "a.web.ns.svc.cluster.local."}},
		{name: "4.2.1.10.in-addr.arpa.", exists: true, targets: []string{"b.web.ns.svc.cluster.local."}},
		{name: "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", exists: true, targets: []string{"a.web.ns.svc.cluster.local."}},
		{name: "2.1.10.in-addr.arpa.", exists: true},
		{name: "1.10.in-addr.arpa.", exists: true},
		{name: "10.in-addr.arpa.", exists: true},
		{name: "d.f.ip6.arpa.", exists: true},
		{name: "f.ip6.arpa.", exists: true},
		{name: "5.2.1.10.in-addr.arpa."},
		{name: "3.2.1.11.in-addr.arpa."},
		{name: "2.2.1.10.in-addr.arpa."},
		{name: "03.2.1.10.in-addr.arpa."},
		{name: "1.3.2.1.10.in-addr.arpa."},
		{name: "e.f.ip6.arpa."},
		{name: "4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."},
	}
	for _, tt := range tests {
		exists, targets := ptrs(tt.name)
		if exists != tt.exists || !slices.Equal(targets, tt.targets) {
			t.Errorf("%s: exists %v, PTR %v; want %v, %v", tt.name, exists, targets, tt.exists, tt.targets)
		}
	}
	if _, n := snap.Lookup("in-addr.arpa."); n == nil || len(n.Rare().SOA) != 1 {
		t.Errorf("the reverse apex lost its SOA: %+v", n)
	}
	// Stats count each address's reverse name once.
	if got, want := snap.ptrs.owners(), 3; got != want {
		t.Errorf("Stats.Names counts %d reverse names, want %d", got, want)
	}
}

// TestPTRAtApex: a reverse zone that is one address's name holds that
// address's PTR at its apex, beside the SOA.
func TestPTRAtApex(t *testing.T) {
	opts := testOptions(t)
	opts.ReverseZones = []string{"1.0.0.10.in-addr.arpa."}
	svcs, sl := dualStack(t)
	snap := Build(opts, 1, svcs, sl)
	_, n := snap.Lookup("1.0.0.10.in-addr.arpa.")
	if n == nil || len(n.PTR) != 1 || len(n.Rare().SOA) != 1 {
		t.Fatalf("apex node %+v", n)
	}
}

// BenchmarkLookupPTR is the cost of answering a reverse name from the
// index: a binary search and the records made for the call.
func BenchmarkLookupPTR(b *testing.B) {
	svcs, sl := memoryFixture(500, 20)
	snap := Build(testOptions(b), 1, svcs, sl)
	var names []string
	for s := range 500 {
		names = append(names, fmt.Sprintf("%d.%d.%d.10.in-addr.arpa.", s%20, s&0xff, s>>8))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, n := snap.Lookup(names[i%len(names)]); n == nil || len(n.PTR) != 1 {
			b.Fatalf("%s: %+v", names[i%len(names)], n)
		}
		i++
	}
}

// each calls f with every record, in the index's order.
func (x *ptrIndex) each(f func(addr netip.Addr, target string)) {
	var buf RRBuf
	it4 := x.v4.from(ptr4{})
	for r, ok := it4.next(); ok; r, ok = it4.next() {
		f(r.ip(), r.to.name(r.ip(), &buf))
	}
	it6 := x.v6.from(ptr6{})
	for r, ok := it6.next(); ok; r, ok = it6.next() {
		f(r.ip(), r.to.name(r.ip(), &buf))
	}
}
