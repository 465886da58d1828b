package answer

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"

	k8s "github.com/hdns-dev/hdns/internal/fixture"

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

// ecsOpt adds a client subnet option to m's OPT record.
func ecsOpt(m *dns.Msg, family uint16, bits, scope uint8, addr []byte) {
	o := m.IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: bits, SourceScope: scope, Address: addr})
}

// queryVariants packs the query for name and qtype in many forms: with
// and without EDNS, DO, client subnet and other options, and with various
// header flags, question counts and opcodes.
func queryVariants(t testing.TB, rng *rand.Rand, name string, qtype uint16) [][]byte {
	t.Helper()
	var out [][]byte
	ip := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	for v := range 22 {
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
			ecsOpt(m, 1, 24, 0, ip("10.1.2.3"))
		case 7:
			m.SetEdns0(1232, true)
			ecsOpt(m, 2, 56, 0, ip("fd00:1:2:3::1"))
		case 8:
			m.SetEdns0(1232, false)
			ecsOpt(m, 1, 0, 0, ip("0.0.0.0"))
		case 9:
			m.SetEdns0(700, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
			ecsOpt(m, 1, 32, 0, ip("192.0.2.77"))
		case 10:
			m.SetEdns0(1232, false)
			ecsOpt(m, 1, 24, 5, ip("10.1.2.3")) // scope set: FORMERR
		case 11:
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1) // BADVERS
		case 12:
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1, 2}}, &dns.EDNS0_PADDING{Padding: make([]byte, 9)})
		case 13:
			m.Opcode = dns.OpcodeNotify
		case 14:
			m.SetEdns0(100, true) // below 512: 512
		case 15:
			m.SetEdns0(1232, false)
			ecsOpt(m, 2, 64, 0, ip("::ffff:10.1.2.3")) // an IPv4 address as IPv6
		case 16:
			m.SetEdns0(1232, false)
			ecsOpt(m, 1, 8, 0, ip("10.1.2.3"))  // more address octets than the prefix needs
			ecsOpt(m, 1, 16, 0, ip("10.9.2.3")) // the last option counts
		case 17:
			m.SetEdns0(1232, false)
			ecsOpt(m, 0, 0, 0, ip("0.0.0.0")) // family 0, as dig sends: FORMERR
		case 18:
			m.Question = append(m.Question, m.Question[0]) // FORMERR, both echoed
		case 19:
			m.Question = nil
		case 20:
			m.SetEdns0(1232, false)
			m.Extra = append(m.Extra, m.Extra[0]) // two OPT records
		case 21:
			m.Question[0].Qclass = dns.ClassCHAOS
		}
		m.Id = uint16(rng.Uint32())
		wire, err := m.Pack()
		if err != nil {
			t.Fatalf("%s %d variant %d: %v", name, qtype, v, err)
		}
		out = append(out, wire)
	}
	return out
}

// fixtureNames are the fixture's names of every kind, and some outside it.
var fixtureNames = []string{
	"web-headless.awx.svc.cluster.local.", "web-0.web-headless.awx.svc.cluster.local.",
	"web.awx.svc.cluster.local.", "alias.awx.svc.cluster.local.", "postgres.awx.svc.cluster.local.",
	"ds.dual.svc.cluster.local.", "ds-0.ds.dual.svc.cluster.local.", "empty.awx.svc.cluster.local.",
	"big.awx.svc.cluster.local.", "few.awx.svc.cluster.local.", "_http._tcp.few.awx.svc.cluster.local.",
	"_http._tcp.big.awx.svc.cluster.local.", "_http._tcp.web.awx.svc.cluster.local.",
	"nope.awx.svc.cluster.local.", "example.com.awx.svc.cluster.local.", "cluster.local.",
	"svc.cluster.local.", "awx.svc.cluster.local.", "dns-version.cluster.local.",
	"ns.dns.cluster.local.", "dns.cluster.local.", "hostmaster.cluster.local.", "local.",
	"10.217.244.10.in-addr.arpa.", "15.120.96.10.in-addr.arpa.", "99.in-addr.arpa.", "in-addr.arpa.",
	"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.", "example.org.",
	"x.pod.cluster.local.", "10-1-2-3.awx.pod.cluster.local.", "pod.cluster.local.",
	strings.Repeat("abcdefghij.", 20) + "awx.svc.cluster.local.",
	// Names parseWire leaves to miekg/dns: escapes, odd octets.
	`a\.b.awx.svc.cluster.local.`, `\000\255x.cluster.local.`, `sp\ ace.awx.svc.cluster.local.`,
	`*.awx.svc.cluster.local.`, `we\(b.awx.svc.cluster.local.`, `.`,
}

// responderPair answers the same names twice, each side from its own
// snapshot built from the same objects, so that stateful policies
// advance in step.
type responderPair struct {
	plan, oracle *Responder
	names        []string
	explain      bool // the policies are deterministic: explain answers alike
}

func pairOf(build func() *zone.Snapshot, names []string) responderPair {
	return responderPair{plan: responderOf(build()), oracle: responderOf(build()), names: names}
}

// TestRespondMatchesOracle answers many kinds of query with Respond and
// with the oracle, over UDP and TCP, and requires the same bytes.
// Policies that draw at random are left out: the two would draw
// differently.
func TestRespondMatchesOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	qtypes := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeANY, dns.TypeSOA,
		dns.TypeNS, dns.TypePTR, dns.TypeCNAME, dns.TypeMX, dns.TypeAXFR, dns.TypeHTTPS, 0}
	fixed := pairOf(func() *zone.Snapshot { return fixture.Cluster(t) }, fixtureNames)
	fixed.explain = true
	pairs := []responderPair{fixed}
	for _, spec := range []string{"round-robin", "sticky", "round-robin, first=3", "sticky, first=2"} {
		pairs = append(pairs, pairOf(func() *zone.Snapshot { return fixture.Balance(t, spec) },
			[]string{"app.bal.svc.cluster.local.", "_http._tcp.app.bal.svc.cluster.local.", "10-9-0-3.app.bal.svc.cluster.local."}))
	}
	pods := pairOf(func() *zone.Snapshot { return fixture.Cluster(t) },
		[]string{"10-1-2-3.awx.pod.cluster.local.", "fd00--1.awx.pod.cluster.local.", "awx.pod.cluster.local.", "pod.cluster.local.", "nope.awx.svc.cluster.local."})
	pods.plan.PodRecords, pods.oracle.PodRecords = true, true
	pairs = append(pairs, pods)

	clients := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("fd00::9")}
	var s Scratch
	var o oracle
	var q query
	var n plainName
	compared, read := 0, 0
	for pi, p := range pairs {
		for _, name := range p.names {
			for _, qtype := range qtypes {
				if pi > 0 && qtype != dns.TypeA && qtype != dns.TypeAAAA && qtype != dns.TypeSRV && qtype != dns.TypeANY {
					continue
				}
				for _, asked := range []string{name, strings.ToUpper(name), randomCase(rng, name)} {
					for _, pkt := range queryVariants(t, rng, asked, qtype) {
						for _, tcp := range []bool{false, true} {
							client := clients[rng.IntN(len(clients))]
							s.explain = nil
							if p.explain && rng.IntN(4) == 0 {
								s.explain = new(Explanation)
							}
							got, result := p.plan.Respond(pkt, client, tcp, &s)
							want, _ := o.respond(p.oracle, pkt, client, tcp)
							compared++
							if parseWire(pkt, &q, &n) {
								read++
							}
							if result != Reply || !bytes.Equal(got, want) {
								var gm, wm dns.Msg
								gm.Unpack(got)
								wm.Unpack(want)
								t.Fatalf("%s %s tcp=%v (%d):\nRespond %x\n%v\noracle  %x\n%v", asked, dns.TypeToString[qtype], tcp, result, got, &gm, want, &wm)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d queries compared, %d read without miekg/dns", compared, read)
	if read < compared/4 {
		t.Errorf("parseWire read only %d of %d queries", read, compared)
	}
}

// TestForwardMatchesOracle: queries outside the zones from allowed
// clients go upstream, others are refused, as the oracle says.
func TestForwardMatchesOracle(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	r.ForwardAllow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	rng := rand.New(rand.NewPCG(3, 4))
	var s Scratch
	var o oracle
	for _, name := range []string{"example.org.", "web.awx.svc.cluster.local.", "cluster.local.", `a\.b.example.`} {
		for _, pkt := range queryVariants(t, rng, name, dns.TypeA) {
			for _, client := range []netip.Addr{netip.MustParseAddr("10.1.1.1"), netip.MustParseAddr("192.0.2.1")} {
				got, result := r.Respond(pkt, client, false, &s)
				want, forward := o.respond(r, pkt, client, false)
				if (result == Forward) != forward || !bytes.Equal(got, want) {
					t.Fatalf("%s from %s: Respond %x (%d), oracle %x (forward %v)", name, client, got, result, want, forward)
				}
			}
		}
	}
}

// TestMixedCaseQuestion checks that mixed-case questions (0x20) are read
// without miekg/dns and keep their case.
func TestMixedCaseQuestion(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	for _, name := range []string{"Web-Headless.awx.svc.cluster.local.", "web-headless.awx.svc.cluster.LOCAL.", "NOPE.AWX.SVC.CLUSTER.LOCAL."} {
		pkt := packedQuery(t, name, dns.TypeA, 1232)
		var q query
		if !parseWire(pkt, &q, new(plainName)) {
			t.Fatalf("%s: not read by parseWire", name)
		}
		var m dns.Msg
		if err := m.Unpack(respondRaw(r, pkt, false)); err != nil {
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

// TestOwnersKeepQuestionCase: records owned by the question's name are
// owned by it as asked, through a pointer to the question (as Knot and
// BIND answer), whichever path writes them.
func TestOwnersKeepQuestionCase(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"WEB-Headless.AWX.svc.cluster.local.", dns.TypeA},
		{"_HTTP._tcp.Few.awx.svc.cluster.local.", dns.TypeSRV},
		{"CLUSTER.Local.", dns.TypeSOA},
	} {
		out := respondRaw(r, packedQuery(t, q.name, q.qtype, 0), false)
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if len(m.Answer) == 0 {
			t.Errorf("%s: no answer", q.name)
			continue
		}
		for _, rr := range m.Answer {
			if rr.Header().Name != q.name {
				t.Errorf("%s: owner %s", q.name, rr.Header().Name)
			}
		}
		if at := 12 + len(q.name) + 1 + 4; len(out) < at+2 || out[at] != 0xC0 || out[at+1] != 12 {
			t.Errorf("%s: first owner does not point at the question: %x", q.name, out)
		}
	}
}

// TestIdenticalSRVSentOnce: two endpoints of one hostname make one SRV
// record per port (RFC 2181 5: identical records are sent once), and their
// two addresses as additional records; Respond and the oracle agree.
func TestIdenticalSRVSentOnce(t *testing.T) {
	tcp := corev1.ProtocolTCP
	objects := append(fixture.ClusterObjects(),
		k8s.Service{Namespace: "awx", Name: "dup", Headless: true,
			Ports: []k8s.Port{{Name: "http", Port: 80, Protocol: tcp}}}.API(),
		k8s.EndpointSlice{Namespace: "awx", Name: "dup-a", Service: "dup",
			Ports: []k8s.Port{{Name: "http", Port: 80, Protocol: tcp}},
			Endpoints: []k8s.Endpoint{
				{Address: "10.5.0.1", Hostname: "dup-name", Ready: new(true), Pod: "dup-1"},
				{Address: "10.5.0.3", Hostname: "other", Ready: new(true), Pod: "dup-3"},
				{Address: "10.5.0.2", Hostname: "dup-name", Ready: new(true), Pod: "dup-2"},
			}}.API())
	r := responderOf(fixture.Build(t, nil, objects...))
	var o oracle
	for _, name := range []string{"_http._tcp.dup.awx.svc.cluster.local.", "dup.awx.svc.cluster.local."} {
		m := fixture.Query(name, dns.TypeSRV)
		reply := exchange(t, r, m, "tcp")
		targets := map[string]int{}
		for _, rr := range reply.Answer {
			targets[rr.(*dns.SRV).Target]++
		}
		if len(reply.Answer) != 2 || targets["dup-name.dup.awx.svc.cluster.local."] != 1 || len(reply.Extra) != 3 {
			t.Errorf("%s SRV: answer %v, additional %v; want dup-name and other once each, and three addresses", name, reply.Answer, reply.Extra)
		}
		pkt, _ := m.Pack()
		if want, _ := o.respond(r, pkt, netip.MustParseAddr("127.0.0.1"), true); !bytes.Equal(want, respondRaw(r, pkt, true)) {
			t.Errorf("%s SRV: Respond and the oracle differ", name)
		}
	}
}

// TestShortDashedIPv6Names: an endpoint without a hostname answers under
// its full dashed IPv6 address and under the short form CoreDNS gives it,
// each owner as asked.
func TestShortDashedIPv6Names(t *testing.T) {
	objects := append(fixture.ClusterObjects(),
		k8s.Service{Namespace: "awx", Name: "six", Headless: true}.API(),
		k8s.EndpointSlice{Namespace: "awx", Name: "six-a", Service: "six",
			Endpoints: []k8s.Endpoint{{Address: "5678:abcd::1", Ready: new(true)}}}.API())
	r := responderOf(fixture.Build(t, nil, objects...))
	for _, label := range []string{"5678-abcd-0000-0000-0000-0000-0000-0001", "5678-abcd--1", "5678-abcd-0-0-0-0-0-1", "5678-ABCD--1"} {
		name := label + ".six.awx.svc.cluster.local."
		reply := exchange(t, r, fixture.Query(name, dns.TypeAAAA), "udp")
		if len(reply.Answer) != 1 || reply.Answer[0].Header().Name != name || reply.Answer[0].(*dns.AAAA).AAAA.String() != "5678:abcd::1" {
			t.Errorf("%s AAAA: %s %v; want 5678:abcd::1", name, dns.RcodeToString[reply.Rcode], reply.Answer)
		}
	}
	for _, label := range []string{"5678-abcd--2", "5678-abcd---1", "10-0-0-1", "--"} {
		name := label + ".six.awx.svc.cluster.local."
		if reply := exchange(t, r, fixture.Query(name, dns.TypeAAAA), "udp"); reply.Rcode != dns.RcodeNameError {
			t.Errorf("%s AAAA: %s, want NXDOMAIN", name, dns.RcodeToString[reply.Rcode])
		}
	}
}
