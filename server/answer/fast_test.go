package answer

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

// randomCase returns name with each letter's case chosen at random, as a
// 0x20 resolver asks.
func randomCase(rng *rand.Rand, name string) string {
	b := []byte(name)
	for i, c := range b {
		if c >= 'a' && c <= 'z' && rng.IntN(2) == 0 {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// queryVariants packs the query for name and qtype in many forms: with
// and without EDNS, DO, client subnet and other options, and with various
// header flags.
func queryVariants(t testing.TB, rng *rand.Rand, name string, qtype uint16) [][]byte {
	t.Helper()
	var out [][]byte
	pack := func(m *dns.Msg) {
		m.Id = uint16(rng.Uint32())
		wire, err := m.Pack()
		if err != nil {
			t.Fatalf("%s %d: %v", name, qtype, err)
		}
		out = append(out, wire)
	}
	ecs := func(m *dns.Msg, family uint16, bits, scope uint8, addr string) {
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: bits, SourceScope: scope, Address: netip.MustParseAddr(addr).AsSlice()})
	}
	for v := range 14 {
		m := fixture.Query(name, qtype)
		switch v {
		case 1:
			m.RecursionDesired, m.CheckingDisabled = true, true
		case 2:
			m.Authoritative, m.AuthenticatedData, m.Truncated, m.Zero = true, true, true, true
		case 3:
			m.SetEdns0(512, false)
		case 4:
			m.SetEdns0(1232, true)
		case 5:
			m.SetEdns0(4096, false)
		case 6:
			m.SetEdns0(1232, false)
			ecs(m, 1, 24, 0, "10.1.2.3")
		case 7:
			m.SetEdns0(1232, true)
			ecs(m, 2, 56, 0, "fd00:1:2:3::1")
		case 8:
			m.SetEdns0(1232, false)
			ecs(m, 1, 0, 0, "0.0.0.0")
		case 9:
			m.SetEdns0(700, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
			ecs(m, 1, 32, 0, "192.0.2.77")
		case 10:
			m.SetEdns0(1232, false)
			ecs(m, 1, 24, 5, "10.1.2.3") // scope set: FORMERR
		case 11:
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1) // BADVERS
		case 12:
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2}}, &dns.EDNS0_PADDING{Padding: make([]byte, 9)})
		case 13:
			m.Opcode = dns.OpcodeNotify
		}
		pack(m)
	}
	return out
}

// TestFastPathMatchesGeneralPath answers many kinds of query twice, once
// by the fast path where it applies and once by the general path alone,
// and requires the same bytes (policies that draw at random are left
// out: the two paths would draw differently). Each path has its own snapshot built from
// the same objects, so that stateful policies advance in step.
func TestFastPathMatchesGeneralPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fixtureNames := []string{
		"web-headless.awx.svc.cluster.local.", "web-0.web-headless.awx.svc.cluster.local.",
		"web.awx.svc.cluster.local.", "alias.awx.svc.cluster.local.", "postgres.awx.svc.cluster.local.",
		"ds.dual.svc.cluster.local.", "ds-0.ds.dual.svc.cluster.local.", "empty.awx.svc.cluster.local.",
		"big.awx.svc.cluster.local.", "few.awx.svc.cluster.local.", "_http._tcp.few.awx.svc.cluster.local.",
		"nope.awx.svc.cluster.local.", "example.com.awx.svc.cluster.local.", "cluster.local.",
		"svc.cluster.local.", "awx.svc.cluster.local.", "dns-version.cluster.local.",
		"ns.dns.cluster.local.", "dns.cluster.local.", "hostmaster.cluster.local.", "local.",
		"10.217.244.10.in-addr.arpa.", "99.in-addr.arpa.", "in-addr.arpa.", "example.org.",
		"x.pod.cluster.local.", "10-1-2-3.awx.pod.cluster.local.",
		strings.Repeat("abcdefghij.", 20) + "awx.svc.cluster.local.",
	}
	qtypes := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeANY, dns.TypeSOA,
		dns.TypeNS, dns.TypePTR, dns.TypeCNAME, dns.TypeMX, dns.TypeAXFR, dns.TypeHTTPS, 0}
	type pair struct {
		fast, slow *Responder
		names      []string
	}
	twice := func(build func() *zone.Snapshot, names []string) pair {
		return pair{responderOf(build()), responderOf(build()), names}
	}
	pairs := []pair{twice(func() *zone.Snapshot { return fixture.Cluster(t) }, fixtureNames)}
	for _, spec := range []string{"round-robin", "sticky", "round-robin, first=3", "sticky, first=2"} {
		pairs = append(pairs, twice(func() *zone.Snapshot { return fixture.Balance(t, spec) }, []string{"app.bal.svc.cluster.local.", "_http._tcp.app.bal.svc.cluster.local."}))
	}
	pods := twice(func() *zone.Snapshot { return fixture.Cluster(t) }, []string{"10-1-2-3.awx.pod.cluster.local.", "nope.awx.svc.cluster.local."})
	pods.fast.PodRecords, pods.slow.PodRecords = true, true
	pairs = append(pairs, pods)

	clients := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("fd00::9")}
	var fs, ss Scratch
	ss.slowOnly = true
	compared, fast := 0, 0
	fastByType := map[uint16]int{}
	for pi, p := range pairs {
		for _, name := range p.names {
			for _, qtype := range qtypes {
				if pi > 0 && qtype != dns.TypeA && qtype != dns.TypeAAAA && qtype != dns.TypeSRV {
					continue
				}
				for _, asked := range []string{name, strings.ToUpper(name), randomCase(rng, name)} {
					for _, pkt := range queryVariants(t, rng, asked, qtype) {
						for _, tcp := range []bool{false, true} {
							client := clients[rng.IntN(len(clients))]
							fs.fastHit = false
							got, _ := p.fast.Respond(pkt, client, tcp, &fs)
							got = bytes.Clone(got)
							want, _ := p.slow.Respond(pkt, client, tcp, &ss)
							compared++
							if fs.fastHit {
								fast++
								fastByType[qtype]++
							}
							if !bytes.Equal(got, want) {
								var gm, wm dns.Msg
								gm.Unpack(got)
								wm.Unpack(want)
								t.Fatalf("%s %s tcp=%v fast=%v:\nfast path %x\n%v\ngeneral   %x\n%v", asked, dns.TypeToString[qtype], tcp, fs.fastHit, got, &gm, want, &wm)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d queries compared, %d answered by the fast path (%d SRV)", compared, fast, fastByType[dns.TypeSRV])
	if fastByType[dns.TypeSRV] == 0 {
		t.Error("no SRV query took the fast path")
	}
	if fast < compared/5 {
		t.Fatalf("the fast path answered only %d of %d queries", fast, compared)
	}
}

// TestFastPathMixedCase checks that mixed-case questions (0x20) take the
// fast path and keep their case.
func TestFastPathMixedCase(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	for _, name := range []string{"Web-Headless.awx.svc.cluster.local.", "web-headless.awx.svc.cluster.LOCAL.", "NOPE.AWX.SVC.CLUSTER.LOCAL."} {
		pkt := packedQuery(t, name, dns.TypeA, 1232)
		var s Scratch
		out, _ := r.Respond(pkt, netip.MustParseAddr("127.0.0.1"), false, &s)
		if !s.fastHit {
			t.Fatalf("%s: not answered by the fast path", name)
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if m.Question[0].Name != name {
			t.Errorf("question %s, asked %s", m.Question[0].Name, name)
		}
		for _, rr := range append(m.Answer, m.Ns...) {
			if !strings.EqualFold(rr.Header().Name, name) && !dns.IsSubDomain("cluster.local.", rr.Header().Name) {
				t.Errorf("%s: owner %s", name, rr.Header().Name)
			}
		}
	}
}
