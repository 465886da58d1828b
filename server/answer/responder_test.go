package answer

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/internal/dnstest"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/server/wire"
	"github.com/hdns-dev/hdns/zone"
)

// responderOf answers from snap for the fixture's zones.
func responderOf(snap *zone.Snapshot) *Responder {
	return &Responder{
		Snapshot: func() *zone.Snapshot { return snap },
		Zones:    []string{"cluster.local.", "in-addr.arpa.", "ip6.arpa."},
	}
}

// exchange asks r as a client at 127.0.0.1 asks over network, "udp" or
// "tcp", and returns the parsed reply.
func exchange(t testing.TB, r *Responder, m *dns.Msg, network string) *dns.Msg {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var reply dns.Msg
	if err := reply.Unpack(respondRaw(r, wire, network == "tcp")); err != nil {
		t.Fatalf("%s %s: %v", network, m.Question[0].String(), err)
	}
	return &reply
}

// rawExchange returns the bytes of r's reply to m over UDP.
func rawExchange(t testing.TB, r *Responder, m *dns.Msg) []byte {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return respondRaw(r, wire, false)
}

// respondRaw returns r's reply to the packet wire from 127.0.0.1, or nil
// when it gets none.
func respondRaw(r *Responder, wire []byte, tcp bool) []byte {
	out, _ := r.Respond(wire, netip.MustParseAddr("127.0.0.1"), tcp, new(Scratch))
	return out
}

// canon renders zone-file lines the way dnstest.Strings renders records.
func canon(t testing.TB, lines []string) []string {
	t.Helper()
	var parsed []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		parsed = append(parsed, rr)
	}
	return dnstest.Strings(parsed)
}

const soa = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"

func TestRecords(t *testing.T) {
	s := responderOf(fixture.Cluster(t))
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		ns     []string
		extra  []string
	}{
		{
			name: "headless A: ready endpoints in spec order", qname: "web-headless.awx.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{
				"web-headless.awx.svc.cluster.local. 5 IN A 10.244.217.10",
				"web-headless.awx.svc.cluster.local. 5 IN A 10.244.194.67",
				"web-headless.awx.svc.cluster.local. 5 IN A 10.244.217.11",
				"web-headless.awx.svc.cluster.local. 5 IN A 10.244.194.70",
			},
		},
		{name: "headless AAAA of an IPv4-only Service is NODATA", qname: "web-headless.awx.svc.cluster.local.", qtype: dns.TypeAAAA, ns: []string{soa}},
		{name: "dual-stack headless A", qname: "ds.dual.svc.cluster.local.", qtype: dns.TypeA, answer: []string{"ds.dual.svc.cluster.local. 5 IN A 10.1.0.5"}},
		{name: "dual-stack headless AAAA", qname: "ds.dual.svc.cluster.local.", qtype: dns.TypeAAAA, answer: []string{"ds.dual.svc.cluster.local. 5 IN AAAA fd00:1::5"}},
		{name: "dual-stack hostname AAAA", qname: "ds-0.ds.dual.svc.cluster.local.", qtype: dns.TypeAAAA, answer: []string{"ds-0.ds.dual.svc.cluster.local. 5 IN AAAA fd00:1::5"}},
		{name: "ClusterIP A", qname: "web.awx.svc.cluster.local.", qtype: dns.TypeA, answer: []string{"web.awx.svc.cluster.local. 5 IN A 10.96.120.15"}},
		{name: "ClusterIP AAAA", qname: "web.awx.svc.cluster.local.", qtype: dns.TypeAAAA, answer: []string{"web.awx.svc.cluster.local. 5 IN AAAA fd00:10:96::15"}},
		{
			name: "ClusterIP SRV of a named port", qname: "_http._tcp.web.awx.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_http._tcp.web.awx.svc.cluster.local. 5 IN SRV 0 100 80 web.awx.svc.cluster.local."},
			extra:  []string{"web.awx.svc.cluster.local. 5 IN A 10.96.120.15", "web.awx.svc.cluster.local. 5 IN AAAA fd00:10:96::15"},
		},
		{name: "ExternalName answers A with its CNAME", qname: "postgres.awx.svc.cluster.local.", qtype: dns.TypeA, answer: []string{"postgres.awx.svc.cluster.local. 5 IN CNAME postgres.db.example.com."}},
		{name: "ExternalName answers any type with its CNAME", qname: "postgres.awx.svc.cluster.local.", qtype: dns.TypeSRV, answer: []string{"postgres.awx.svc.cluster.local. 5 IN CNAME postgres.db.example.com."}},
		{
			name: "an in-zone CNAME is followed", qname: "alias.awx.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{"alias.awx.svc.cluster.local. 5 IN CNAME web.awx.svc.cluster.local.", "web.awx.svc.cluster.local. 5 IN A 10.96.120.15"},
		},
		{name: "hostname record", qname: "web-1.web-headless.awx.svc.cluster.local.", qtype: dns.TypeA, answer: []string{"web-1.web-headless.awx.svc.cluster.local. 5 IN A 10.244.194.67"}},
		{name: "endpoint without hostname is named by its dashed address", qname: "10-244-194-70.web-headless.awx.svc.cluster.local.", qtype: dns.TypeA, answer: []string{"10-244-194-70.web-headless.awx.svc.cluster.local. 5 IN A 10.244.194.70"}},
		{name: "an unready endpoint has no hostname record", qname: "web-3.web-headless.awx.svc.cluster.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{
			name: "headless SRV of a named port: target port, hostnames, glue", qname: "_nginx-web-headless._tcp.web-headless.awx.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{
				"_nginx-web-headless._tcp.web-headless.awx.svc.cluster.local. 5 IN SRV 0 25 80 web-0.web-headless.awx.svc.cluster.local.",
				"_nginx-web-headless._tcp.web-headless.awx.svc.cluster.local. 5 IN SRV 0 25 80 web-1.web-headless.awx.svc.cluster.local.",
				"_nginx-web-headless._tcp.web-headless.awx.svc.cluster.local. 5 IN SRV 0 25 80 web-2.web-headless.awx.svc.cluster.local.",
				"_nginx-web-headless._tcp.web-headless.awx.svc.cluster.local. 5 IN SRV 0 25 80 10-244-194-70.web-headless.awx.svc.cluster.local.",
			},
			extra: []string{
				"web-0.web-headless.awx.svc.cluster.local. 5 IN A 10.244.217.10",
				"web-1.web-headless.awx.svc.cluster.local. 5 IN A 10.244.194.67",
				"web-2.web-headless.awx.svc.cluster.local. 5 IN A 10.244.217.11",
				"10-244-194-70.web-headless.awx.svc.cluster.local. 5 IN A 10.244.194.70",
			},
		},
		{
			name: "SRV at the Service name covers every named port", qname: "ds.dual.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"ds.dual.svc.cluster.local. 5 IN SRV 0 100 5353 ds-0.ds.dual.svc.cluster.local."},
			extra:  []string{"ds-0.ds.dual.svc.cluster.local. 5 IN A 10.1.0.5", "ds-0.ds.dual.svc.cluster.local. 5 IN AAAA fd00:1::5"},
		},
		{name: "PTR of an endpoint", qname: "10.217.244.10.in-addr.arpa.", qtype: dns.TypePTR, answer: []string{"10.217.244.10.in-addr.arpa. 5 IN PTR web-0.web-headless.awx.svc.cluster.local."}},
		{
			name: "PTR of an IPv6 endpoint", qname: "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
			answer: []string{"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR ds-0.ds.dual.svc.cluster.local."},
		},
		{name: "PTR of a cluster IP", qname: "15.120.96.10.in-addr.arpa.", qtype: dns.TypePTR, answer: []string{"15.120.96.10.in-addr.arpa. 5 IN PTR web.awx.svc.cluster.local."}},
		{
			name: "PTR of an unknown address is NXDOMAIN in the reverse zone", qname: "1.1.1.10.in-addr.arpa.", qtype: dns.TypePTR, rcode: dns.RcodeNameError,
			ns: []string{"in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"},
		},
		{name: "dns-version", qname: "dns-version.cluster.local.", qtype: dns.TypeTXT, answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}},
		{name: "SOA at the apex", qname: "cluster.local.", qtype: dns.TypeSOA, answer: []string{soa}},
		{name: "NS at the apex", qname: "cluster.local.", qtype: dns.TypeNS, answer: []string{"cluster.local. 5 IN NS ns.dns.cluster.local."}},
		{name: "svc is an empty non-terminal", qname: "svc.cluster.local.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "a namespace is an empty non-terminal", qname: "awx.svc.cluster.local.", qtype: dns.TypeA, ns: []string{soa}},
		{name: "_tcp under a Service is an empty non-terminal", qname: "_tcp.web-headless.awx.svc.cluster.local.", qtype: dns.TypeSRV, ns: []string{soa}},
		{name: "headless without ready endpoints is NXDOMAIN", qname: "empty.awx.svc.cluster.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "unknown Service is NXDOMAIN", qname: "nope.awx.svc.cluster.local.", qtype: dns.TypeA, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "unknown port is NXDOMAIN", qname: "_nope._tcp.web-headless.awx.svc.cluster.local.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "existing name, missing type is NODATA", qname: "web.awx.svc.cluster.local.", qtype: dns.TypeTXT, ns: []string{soa}},
		{
			name: "ANY is answered with one RRset (RFC 8482)", qname: "web.awx.svc.cluster.local.", qtype: dns.TypeANY,
			answer: []string{"web.awx.svc.cluster.local. 5 IN A 10.96.120.15"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				r := exchange(t, s, fixture.Query(tt.qname, tt.qtype), network)
				if r.Rcode != tt.rcode {
					t.Errorf("%s: rcode %s, want %s", network, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
				}
				if !r.Authoritative {
					t.Errorf("%s: AA not set on an in-zone answer", network)
				}
				if r.RecursionAvailable {
					t.Errorf("%s: RA set by a server that does not recurse", network)
				}
				for _, sec := range []struct {
					name      string
					got, want []string
				}{{"answer", dnstest.Strings(r.Answer), canon(t, tt.answer)}, {"authority", dnstest.Strings(r.Ns), canon(t, tt.ns)}, {"additional", dnstest.Strings(r.Extra), canon(t, tt.extra)}} {
					if !slices.Equal(sec.got, sec.want) {
						t.Errorf("%s %s section:\n got %q\nwant %q", network, sec.name, sec.got, sec.want)
					}
				}
			}
		})
	}
}

func TestNegativeTTLIsMinOfSOATTLAndMinimum(t *testing.T) {
	opts := fixture.Options(t)
	opts.TTL = 30
	snap := zone.Build(opts, 1, nil, nil)
	apex := snap.ApexOf("cluster.local.")
	soa := apex.SOA.(*dns.SOA)
	neg := apex.NegativeSOA.(*dns.SOA)
	if want := min(soa.Hdr.Ttl, soa.Minttl); neg.Hdr.Ttl != want {
		t.Errorf("negative SOA TTL %d, want %d", neg.Hdr.Ttl, want)
	}
	s := responderOf(snap)
	r := exchange(t, s, fixture.Query("nope.cluster.local.", dns.TypeA), "udp")
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Ttl != 30 {
		t.Errorf("NXDOMAIN authority %v, want the SOA with TTL 30", r.Ns)
	}
}

func TestQuestionCaseAndFlags(t *testing.T) {
	s := responderOf(fixture.Cluster(t))
	m := fixture.Query("WeB-HeAdLeSs.AwX.sVc.ClUsTeR.lOcAl.", dns.TypeA)
	m.RecursionDesired = true
	m.CheckingDisabled = true
	r := exchange(t, s, m, "udp")
	if r.Question[0].Name != m.Question[0].Name {
		t.Errorf("question %q, want the client's case %q", r.Question[0].Name, m.Question[0].Name)
	}
	if !r.RecursionDesired || !r.CheckingDisabled {
		t.Errorf("RD=%v CD=%v, want both copied from the query", r.RecursionDesired, r.CheckingDisabled)
	}
	if r.RecursionAvailable || !r.Authoritative || len(r.Answer) != 4 {
		t.Errorf("RA=%v AA=%v answers=%d, want RA off, AA on, 4 answers", r.RecursionAvailable, r.Authoritative, len(r.Answer))
	}
}

func TestRefusedOutOfZone(t *testing.T) {
	s := responderOf(fixture.Cluster(t))
	for _, q := range []struct {
		name  string
		class uint16
	}{{"cluster.local.", dns.ClassINET}, {"example.com.", dns.ClassINET}, {"local.", dns.ClassINET}, {"xcluster.local.", dns.ClassINET}, {"version.bind.", dns.ClassCHAOS}, {"web.awx.svc.cluster.local.", dns.ClassCHAOS}} {
		qtype := dns.TypeA
		if q.name == "cluster.local." {
			qtype = dns.TypeAXFR // zone transfers are refused
		}
		m := fixture.Query(q.name, qtype)
		m.Question[0].Qclass = q.class
		r := exchange(t, s, m, "udp")
		if r.Rcode != dns.RcodeRefused || r.Authoritative || len(r.Answer)+len(r.Ns) != 0 {
			t.Errorf("%s class %d: rcode %s AA=%v, want REFUSED without AA or records", q.name, q.class, dns.RcodeToString[r.Rcode], r.Authoritative)
		}
	}
}

func TestEDNS(t *testing.T) {
	s := responderOf(fixture.Cluster(t))

	m := fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(4096, true)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("x")})
	r := exchange(t, s, m, "udp")
	ropt := r.IsEdns0()
	switch {
	case ropt == nil:
		t.Fatal("no OPT in the reply to an EDNS query")
	case ropt.Version() != 0 || ropt.UDPSize() != wire.MaxUDPSize || !ropt.Do():
		t.Errorf("OPT version %d size %d DO %v, want 0, %d, true", ropt.Version(), ropt.UDPSize(), ropt.Do(), wire.MaxUDPSize)
	case len(ropt.Option) != 0:
		t.Errorf("unknown options echoed: %v", ropt.Option)
	case r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1:
		t.Errorf("rcode %s answers %d, want an answer despite the unknown option", dns.RcodeToString[r.Rcode], len(r.Answer))
	}

	m = fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	r = exchange(t, s, m, "udp")
	if r.IsEdns0() != nil {
		t.Error("OPT in the reply to a query without EDNS")
	}

	m = fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r = exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 || len(r.Answer) != 0 {
		t.Errorf("EDNS version 1: rcode %s, OPT %v, %d answers; want BADVERS with an OPT of version 0 and no answer", dns.RcodeToString[r.Rcode], r.IsEdns0(), len(r.Answer))
	}

	m = fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.Extra = append(m.Extra, m.Extra[0])
	r = exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeFormatError {
		t.Errorf("two OPT records: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
}

func TestTruncation(t *testing.T) {
	s := responderOf(fixture.Cluster(t))
	const name = "big.awx.svc.cluster.local."
	for _, tc := range []struct {
		desc  string
		edns  uint16 // 0: no EDNS
		limit int
	}{{"no EDNS", 0, 512}, {"EDNS 1232", 1232, 1232}, {"EDNS 4096 is capped at 1232", 4096, 1232}, {"EDNS below 512 means 512", 100, 512}} {
		m := fixture.Query(name, dns.TypeA)
		if tc.edns != 0 {
			m.SetEdns0(tc.edns, false)
		}
		wire := rawExchange(t, s, m)
		var r dns.Msg
		if err := r.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || len(wire) > tc.limit || len(r.Answer) == 0 || len(r.Answer) >= 100 {
			t.Errorf("%s: TC=%v, %d bytes, %d answers; want TC, at most %d bytes, a partial answer", tc.desc, r.Truncated, len(wire), len(r.Answer), tc.limit)
		}
		if tc.edns != 0 && r.IsEdns0() == nil {
			t.Errorf("%s: truncation dropped the OPT record", tc.desc)
		}
	}
	r := exchange(t, s, fixture.Query(name, dns.TypeA), "tcp")
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("TCP: TC=%v with %d answers, want the complete 100", r.Truncated, len(r.Answer))
	}

	// Glue is dropped before answers, and dropping only glue does not set
	// TC (RFC 2181 9): 7 SRV records fit in 512 bytes (targets are never compressed), with their glue they do not.
	m := fixture.Query("_http._tcp.few.awx.svc.cluster.local.", dns.TypeSRV)
	r = exchange(t, s, m, "udp")
	if r.Truncated || len(r.Answer) != 7 || len(r.Extra) != 0 {
		t.Errorf("SRV of 7 without EDNS: TC=%v answers=%d extra=%d, want 7 answers, glue dropped, no TC", r.Truncated, len(r.Answer), len(r.Extra))
	}
	r = exchange(t, s, m, "tcp")
	if r.Truncated || len(r.Answer) != 7 || len(r.Extra) != 7 {
		t.Errorf("SRV of 7 over TCP: TC=%v answers=%d extra=%d, want 7 answers with 7 glue records", r.Truncated, len(r.Answer), len(r.Extra))
	}
	m = fixture.Query("_http._tcp.big.awx.svc.cluster.local.", dns.TypeSRV)
	m.SetEdns0(1232, false)
	r = exchange(t, s, m, "udp")
	if !r.Truncated || len(r.Extra) != 1 {
		t.Errorf("SRV of 100 with EDNS: TC=%v extra=%d, want TC and only the OPT record", r.Truncated, len(r.Extra))
	}
}

func TestCompression(t *testing.T) {
	s := responderOf(fixture.Cluster(t))
	m := fixture.Query("web-headless.awx.svc.cluster.local.", dns.TypeA)
	r := exchange(t, s, m, "udp")
	r.Compress = false
	uncompressed, _ := r.Pack()
	raw := rawExchange(t, s, m)
	if len(raw) >= len(uncompressed) {
		t.Errorf("reply is %d bytes, uncompressed it would be %d: compression is off", len(raw), len(uncompressed))
	}
}

func TestOpcodesAndMalformed(t *testing.T) {
	s := responderOf(fixture.Cluster(t))

	// Unknown opcode: NOTIMP with a fresh header (no flag of the query
	// echoed but the opcode).
	m := fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.Opcode = dns.OpcodeUpdate
	m.RecursionDesired, m.Authoritative, m.AuthenticatedData = true, true, true
	r := exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeNotImplemented || r.Opcode != dns.OpcodeUpdate || r.Authoritative || r.RecursionDesired || r.AuthenticatedData || r.Truncated || r.Id != m.Id {
		t.Errorf("UPDATE: got %s", r.MsgHdr.String())
	}

	// No question: FORMERR.
	m = fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.Question = nil
	r = exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}

	// Every reply to an EDNS query carries an OPT (RFC 6891 6.1.1), errors
	// included.
	for _, tc := range []struct {
		desc  string
		edit  func(*dns.Msg)
		rcode int
	}{
		{"NOTIFY", func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }, dns.RcodeNotImplemented},
		{"no question", func(m *dns.Msg) { m.Question = nil }, dns.RcodeFormatError},
		{"two questions", func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }, dns.RcodeFormatError},
	} {
		m := fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
		m.SetEdns0(1232, false)
		tc.edit(m)
		r := exchange(t, s, m, "udp")
		if r.Rcode != tc.rcode || r.IsEdns0() == nil {
			t.Errorf("%s with EDNS: rcode %s, OPT %v; want %s with an OPT", tc.desc, dns.RcodeToString[r.Rcode], r.IsEdns0(), dns.RcodeToString[tc.rcode])
		}
	}

	// Two questions: FORMERR.
	m = fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	r = exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}

	// A body that does not parse: FORMERR with a fresh header.
	m = fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	good, _ := m.Pack()
	bad := append([]byte(nil), good[:len(good)-3]...)
	bad[2] |= 0x04 | 0x02 // AA and TC set on the query: neither may be echoed
	reply := respondRaw(s, bad, false)
	var rm dns.Msg
	if err := rm.Unpack(reply); err != nil {
		t.Fatalf("malformed query: reply %x does not parse: %v", reply, err)
	}
	if rm.Rcode != dns.RcodeFormatError || rm.Authoritative || rm.Truncated || !rm.Response || rm.Id != m.Id {
		t.Errorf("malformed query: got %s", rm.MsgHdr.String())
	}

	// A response sent to the server is dropped, and so is a runt.
	resp := append([]byte(nil), good...)
	resp[2] |= 0x80
	if reply := respondRaw(s, resp, false); reply != nil {
		t.Errorf("a response got a reply: %x", reply)
	}
	if reply := respondRaw(s, []byte{1, 2, 3}, false); reply != nil {
		t.Errorf("a 3-byte packet got a reply: %x", reply)
	}
	// The server still answers afterwards.
	if r := exchange(t, s, fixture.Query("web.awx.svc.cluster.local.", dns.TypeA), "udp"); len(r.Answer) != 1 {
		t.Errorf("after bad packets: %d answers", len(r.Answer))
	}
}

func TestBeforeFirstSnapshot(t *testing.T) {
	s := responderOf(nil)
	for _, tc := range []struct {
		name  string
		rcode int
	}{{"web.awx.svc.cluster.local.", dns.RcodeServerFailure}, {"1.0.0.10.in-addr.arpa.", dns.RcodeServerFailure}, {"example.com.", dns.RcodeRefused}} {
		r := exchange(t, s, fixture.Query(tc.name, dns.TypeA), "udp")
		if r.Rcode != tc.rcode {
			t.Errorf("%s before sync: rcode %s, want %s", tc.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
}

func TestPodRecords(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	r.PodRecords = true
	s := r
	off := responderOf(fixture.Cluster(t))
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer string
	}{
		{"10-244-1-5.awx.pod.cluster.local.", dns.TypeA, dns.RcodeSuccess, "10-244-1-5.awx.pod.cluster.local. 5 IN A 10.244.1.5"},
		{"10-244-1-5.awx.pod.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"fd00--1.awx.pod.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, "fd00--1.awx.pod.cluster.local. 5 IN AAAA fd00::1"},
		{"awx.pod.cluster.local.", dns.TypeA, dns.RcodeSuccess, ""},
		{"pod.cluster.local.", dns.TypeA, dns.RcodeSuccess, ""},
		{"not-an-ip.awx.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, ""},
		{"10-244-1-5.a.b.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, ""},
	} {
		got := exchange(t, s, fixture.Query(tc.name, tc.qtype), "udp")
		var answer string
		if len(got.Answer) == 1 {
			answer = strings.Join(strings.Fields(got.Answer[0].String()), " ")
		}
		if got.Rcode != tc.rcode || answer != tc.answer || !got.Authoritative || (tc.answer == "" && len(got.Ns) != 1) {
			t.Errorf("%s %s: %s %q (authority %v), want %s %q", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[got.Rcode], answer, got.Ns, dns.RcodeToString[tc.rcode], tc.answer)
		}
		if tc.answer != "" {
			if r := exchange(t, off, fixture.Query(tc.name, tc.qtype), "udp"); r.Rcode != dns.RcodeNameError {
				t.Errorf("%s without pod records: %s, want NXDOMAIN", tc.name, dns.RcodeToString[r.Rcode])
			}
		}
	}
}

// TestFormErrOnExtraBytes: bytes after the last record, counts that
// promise more records than the packet holds, and an OPT record outside
// the additional section are format errors (Knot answers them so;
// miekg/dns alone would read past them).
func TestFormErrOnExtraBytes(t *testing.T) {
	s := responderOf(fixture.Cluster(t))
	plain, _ := fixture.Query("web.awx.svc.cluster.local.", dns.TypeA).Pack()
	m := fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	edns, _ := m.Pack()
	m = fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.Answer, m.Extra = m.Extra, nil
	optInAnswer, _ := m.Pack()
	m.Ns, m.Answer = m.Answer, nil
	optInAuthority, _ := m.Pack()
	counted := append([]byte(nil), plain...)
	counted[11] = 1 // an additional record that is not there
	for _, tc := range []struct {
		desc string
		pkt  []byte
	}{
		{"trailing byte", append(append([]byte(nil), plain...), 0)},
		{"trailing bytes after OPT", append(append([]byte(nil), edns...), 1, 2, 3)},
		{"OPT in the answer section", optInAnswer},
		{"OPT in the authority section", optInAuthority},
		{"additional count over the records", counted},
	} {
		var rm dns.Msg
		if err := rm.Unpack(respondRaw(s, tc.pkt, false)); err != nil {
			t.Fatalf("%s: %v", tc.desc, err)
		}
		if rm.Rcode != dns.RcodeFormatError || len(rm.Answer) != 0 {
			t.Errorf("%s: rcode %s, %d answers; want FORMERR", tc.desc, dns.RcodeToString[rm.Rcode], len(rm.Answer))
		}
	}
}

// TestReservedQtype: a question of type 0 (reserved, RFC 6895) gets
// NOTIMP with its question, without AA, inside the zones and out.
func TestReservedQtype(t *testing.T) {
	s := responderOf(fixture.Cluster(t))
	s.ForwardAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, name := range []string{"web.awx.svc.cluster.local.", "nope.awx.svc.cluster.local.", "example.org."} {
		m := fixture.Query(name, 0)
		r := exchange(t, s, m, "udp")
		if r.Rcode != dns.RcodeNotImplemented || r.Authoritative || len(r.Answer)+len(r.Ns) != 0 || len(r.Question) != 1 {
			t.Errorf("%s type 0: %s, %d answers, %d authority; want NOTIMP with the question alone",
				name, r.MsgHdr.String(), len(r.Answer), len(r.Ns))
		}
	}
}

// TestApexNSCarriesAddresses: with --ns-address, the apex NS answer
// carries the addresses of its target in the additional section, as
// CoreDNS's does, in forward and reverse zones alike, as the oracle does.
func TestApexNSCarriesAddresses(t *testing.T) {
	opts := fixture.Options(t)
	opts.NSAddrs = []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("fd00::53")}
	s := responderOf(fixture.Build(t, opts, fixture.ClusterObjects()...))
	want := canon(t, []string{"ns.dns.cluster.local. 5 IN A 10.0.0.53", "ns.dns.cluster.local. 5 IN AAAA fd00::53"})
	var o oracle
	for _, apex := range []string{"cluster.local.", "in-addr.arpa."} {
		m := fixture.Query(apex, dns.TypeNS)
		r := exchange(t, s, m, "udp")
		if got := dnstest.Strings(r.Extra); len(r.Answer) != 1 || !slices.Equal(got, want) {
			t.Errorf("%s NS: %d answers, additional %v; want %v", apex, len(r.Answer), got, want)
		}
		pkt, _ := m.Pack()
		if oracleOut, _ := o.respond(s, pkt, netip.MustParseAddr("127.0.0.1"), false); !slices.Equal(oracleOut, rawExchange(t, s, m)) {
			t.Errorf("%s NS: Respond and the oracle differ", apex)
		}
	}
}
