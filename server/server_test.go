package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/zone"
)

const testTTL = 5

func testOptions(t testing.TB) *zone.Options {
	t.Helper()
	policies, err := policy.NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	return &zone.Options{
		Zones:        []string{"cluster.local."},
		ReverseZones: []string{"in-addr.arpa.", "ip6.arpa."},
		TTL:          testTTL,
		Policies:     policies,
	}
}

// bigService is a headless Service in namespace awx with n ready endpoints
// at 10.<net>.x.y and a named port.
func bigService(name string, net, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: awx}\nspec: {clusterIP: None}\n", name)
	fmt.Fprintf(&b, "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: %s-1, namespace: awx, labels: {kubernetes.io/service-name: %s}}\naddressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\nendpoints:\n", name, name)
	for i := range n {
		fmt.Fprintf(&b, "- {addresses: [10.%d.%d.%d]}\n", net, i/250, i%250+1)
	}
	return b.String()
}

// fixtureSnapshot builds the snapshot of testdata/cluster.yaml plus the
// Services big (100 endpoints) and few (7), with SOA serial 1.
func fixtureSnapshot(t testing.TB) *zone.Snapshot {
	t.Helper()
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, bigService("big", 3, 100)...)
	data = append(data, bigService("few", 4, 7)...)
	svcs, slices, err := zone.ParseManifest("cluster.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	return zone.Build(testOptions(t), 1, svcs, slices)
}

// startServer serves snap on 127.0.0.1 on a free port until the test ends.
func startServer(t testing.TB, snap *zone.Snapshot) *Server {
	t.Helper()
	return serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(snap)})
}

// responderOf answers from snap for the fixture's zones.
func responderOf(snap *zone.Snapshot) *Responder {
	return &Responder{
		Snapshot: func() *zone.Snapshot { return snap },
		Zones:    []string{"cluster.local.", "in-addr.arpa.", "ip6.arpa."},
	}
}

// serve binds s and serves until the test ends.
func serve(t testing.TB, s *Server) *Server {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func exchange(t testing.TB, s *Server, m *dns.Msg, network string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	addr := s.UDPAddr().String()
	if network == "tcp" {
		addr = s.TCPAddr().String()
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, m.Question[0].String(), err)
	}
	return r
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

// rrs renders records as zone-file lines.
func rrs(list []dns.RR) []string {
	var out []string
	for _, rr := range list {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

// canon renders zone-file lines the way rrs does.
func canon(t testing.TB, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test record %q: %v", l, err)
		}
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

const soa = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"

func TestRecords(t *testing.T) {
	s := startServer(t, fixtureSnapshot(t))
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
				r := exchange(t, s, query(tt.qname, tt.qtype), network)
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
				}{{"answer", rrs(r.Answer), canon(t, tt.answer)}, {"authority", rrs(r.Ns), canon(t, tt.ns)}, {"additional", rrs(r.Extra), canon(t, tt.extra)}} {
					if !slices.Equal(sec.got, sec.want) {
						t.Errorf("%s %s section:\n got %q\nwant %q", network, sec.name, sec.got, sec.want)
					}
				}
			}
		})
	}
}

func TestNegativeTTLIsMinOfSOATTLAndMinimum(t *testing.T) {
	opts := testOptions(t)
	opts.TTL = 30
	snap := zone.Build(opts, 1, nil, nil)
	apex := snap.ApexOf("cluster.local.")
	soa := apex.SOA.(*dns.SOA)
	neg := apex.NegativeSOA.(*dns.SOA)
	if want := min(soa.Hdr.Ttl, soa.Minttl); neg.Hdr.Ttl != want {
		t.Errorf("negative SOA TTL %d, want %d", neg.Hdr.Ttl, want)
	}
	s := startServer(t, snap)
	r := exchange(t, s, query("nope.cluster.local.", dns.TypeA), "udp")
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Ttl != 30 {
		t.Errorf("NXDOMAIN authority %v, want the SOA with TTL 30", r.Ns)
	}
}

func TestQuestionCaseAndFlags(t *testing.T) {
	s := startServer(t, fixtureSnapshot(t))
	m := query("WeB-HeAdLeSs.AwX.sVc.ClUsTeR.lOcAl.", dns.TypeA)
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
	s := startServer(t, fixtureSnapshot(t))
	for _, q := range []struct {
		name  string
		class uint16
	}{{"cluster.local.", dns.ClassINET}, {"example.com.", dns.ClassINET}, {"local.", dns.ClassINET}, {"xcluster.local.", dns.ClassINET}, {"version.bind.", dns.ClassCHAOS}, {"web.awx.svc.cluster.local.", dns.ClassCHAOS}} {
		qtype := dns.TypeA
		if q.name == "cluster.local." {
			qtype = dns.TypeAXFR // zone transfers are refused
		}
		m := query(q.name, qtype)
		m.Question[0].Qclass = q.class
		r := exchange(t, s, m, "udp")
		if r.Rcode != dns.RcodeRefused || r.Authoritative || len(r.Answer)+len(r.Ns) != 0 {
			t.Errorf("%s class %d: rcode %s AA=%v, want REFUSED without AA or records", q.name, q.class, dns.RcodeToString[r.Rcode], r.Authoritative)
		}
	}
}

func TestEDNS(t *testing.T) {
	s := startServer(t, fixtureSnapshot(t))

	m := query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(4096, true)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("x")})
	r := exchange(t, s, m, "udp")
	ropt := r.IsEdns0()
	switch {
	case ropt == nil:
		t.Fatal("no OPT in the reply to an EDNS query")
	case ropt.Version() != 0 || ropt.UDPSize() != maxUDPSize || !ropt.Do():
		t.Errorf("OPT version %d size %d DO %v, want 0, %d, true", ropt.Version(), ropt.UDPSize(), ropt.Do(), maxUDPSize)
	case len(ropt.Option) != 0:
		t.Errorf("unknown options echoed: %v", ropt.Option)
	case r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1:
		t.Errorf("rcode %s answers %d, want an answer despite the unknown option", dns.RcodeToString[r.Rcode], len(r.Answer))
	}

	m = query("web.awx.svc.cluster.local.", dns.TypeA)
	r = exchange(t, s, m, "udp")
	if r.IsEdns0() != nil {
		t.Error("OPT in the reply to a query without EDNS")
	}

	m = query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r = exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 || len(r.Answer) != 0 {
		t.Errorf("EDNS version 1: rcode %s, OPT %v, %d answers; want BADVERS with an OPT of version 0 and no answer", dns.RcodeToString[r.Rcode], r.IsEdns0(), len(r.Answer))
	}

	m = query("web.awx.svc.cluster.local.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.Extra = append(m.Extra, m.Extra[0])
	r = exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeFormatError {
		t.Errorf("two OPT records: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
}

func TestTruncation(t *testing.T) {
	s := startServer(t, fixtureSnapshot(t))
	const name = "big.awx.svc.cluster.local."
	for _, tc := range []struct {
		desc  string
		edns  uint16 // 0: no EDNS
		limit int
	}{{"no EDNS", 0, 512}, {"EDNS 1232", 1232, 1232}, {"EDNS 4096 is capped at 1232", 4096, 1232}, {"EDNS below 512 means 512", 100, 512}} {
		m := query(name, dns.TypeA)
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
	r := exchange(t, s, query(name, dns.TypeA), "tcp")
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("TCP: TC=%v with %d answers, want the complete 100", r.Truncated, len(r.Answer))
	}

	// Glue is dropped before answers, and dropping only glue does not set
	// TC (RFC 2181 9): 7 SRV records fit in 512 bytes (targets are never compressed), with their glue they do not.
	m := query("_http._tcp.few.awx.svc.cluster.local.", dns.TypeSRV)
	r = exchange(t, s, m, "udp")
	if r.Truncated || len(r.Answer) != 7 || len(r.Extra) != 0 {
		t.Errorf("SRV of 7 without EDNS: TC=%v answers=%d extra=%d, want 7 answers, glue dropped, no TC", r.Truncated, len(r.Answer), len(r.Extra))
	}
	r = exchange(t, s, m, "tcp")
	if r.Truncated || len(r.Answer) != 7 || len(r.Extra) != 7 {
		t.Errorf("SRV of 7 over TCP: TC=%v answers=%d extra=%d, want 7 answers with 7 glue records", r.Truncated, len(r.Answer), len(r.Extra))
	}
	m = query("_http._tcp.big.awx.svc.cluster.local.", dns.TypeSRV)
	m.SetEdns0(1232, false)
	r = exchange(t, s, m, "udp")
	if !r.Truncated || len(r.Extra) != 1 {
		t.Errorf("SRV of 100 with EDNS: TC=%v extra=%d, want TC and only the OPT record", r.Truncated, len(r.Extra))
	}
}

func TestCompression(t *testing.T) {
	s := startServer(t, fixtureSnapshot(t))
	m := query("web-headless.awx.svc.cluster.local.", dns.TypeA)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	r.Compress = false
	uncompressed, _ := r.Pack()
	raw := rawExchange(t, s, m)
	if len(raw) >= len(uncompressed) {
		t.Errorf("reply is %d bytes, uncompressed it would be %d: compression is off", len(raw), len(uncompressed))
	}
}

// rawExchange sends m over UDP and returns the reply's bytes.
func rawExchange(t testing.TB, s *Server, m *dns.Msg) []byte {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return rawUDP(t, s, wire, 2*time.Second)
}

// rawUDP sends wire and returns the reply, or nil when none comes within
// wait.
func rawUDP(t testing.TB, s *Server, wire []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := dns.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestOpcodesAndMalformed(t *testing.T) {
	s := startServer(t, fixtureSnapshot(t))

	// Unknown opcode: NOTIMP with a fresh header (no flag of the query
	// echoed but the opcode).
	m := query("web.awx.svc.cluster.local.", dns.TypeA)
	m.Opcode = dns.OpcodeUpdate
	m.RecursionDesired, m.Authoritative, m.AuthenticatedData = true, true, true
	r := exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeNotImplemented || r.Opcode != dns.OpcodeUpdate || r.Authoritative || r.RecursionDesired || r.AuthenticatedData || r.Truncated || r.Id != m.Id {
		t.Errorf("UPDATE: got %s", r.MsgHdr.String())
	}

	// No question: FORMERR.
	m = query("web.awx.svc.cluster.local.", dns.TypeA)
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
		m := query("web.awx.svc.cluster.local.", dns.TypeA)
		m.SetEdns0(1232, false)
		tc.edit(m)
		r := exchange(t, s, m, "udp")
		if r.Rcode != tc.rcode || r.IsEdns0() == nil {
			t.Errorf("%s with EDNS: rcode %s, OPT %v; want %s with an OPT", tc.desc, dns.RcodeToString[r.Rcode], r.IsEdns0(), dns.RcodeToString[tc.rcode])
		}
	}

	// Two questions: FORMERR.
	m = query("web.awx.svc.cluster.local.", dns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	r = exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}

	// A body that does not parse: FORMERR with a fresh header.
	m = query("web.awx.svc.cluster.local.", dns.TypeA)
	good, _ := m.Pack()
	bad := append([]byte(nil), good[:len(good)-3]...)
	bad[2] |= 0x04 | 0x02 // AA and TC set on the query: neither may be echoed
	reply := rawUDP(t, s, bad, 2*time.Second)
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
	if reply := rawUDP(t, s, resp, 300*time.Millisecond); reply != nil {
		t.Errorf("a response got a reply: %x", reply)
	}
	if reply := rawUDP(t, s, []byte{1, 2, 3}, 300*time.Millisecond); reply != nil {
		t.Errorf("a 3-byte packet got a reply: %x", reply)
	}
	// The server still answers afterwards.
	if r := exchange(t, s, query("web.awx.svc.cluster.local.", dns.TypeA), "udp"); len(r.Answer) != 1 {
		t.Errorf("after bad packets: %d answers", len(r.Answer))
	}
}

func TestBeforeFirstSnapshot(t *testing.T) {
	s := startServer(t, nil)
	for _, tc := range []struct {
		name  string
		rcode int
	}{{"web.awx.svc.cluster.local.", dns.RcodeServerFailure}, {"1.0.0.10.in-addr.arpa.", dns.RcodeServerFailure}, {"example.com.", dns.RcodeRefused}} {
		r := exchange(t, s, query(tc.name, dns.TypeA), "udp")
		if r.Rcode != tc.rcode {
			t.Errorf("%s before sync: rcode %s, want %s", tc.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
		}
	}
}

func TestTCPPipelining(t *testing.T) {
	s := startServer(t, fixtureSnapshot(t))
	co, err := dns.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.SetDeadline(time.Now().Add(5 * time.Second))
	names := []string{"web.awx.svc.cluster.local.", "big.awx.svc.cluster.local.", "nope.awx.svc.cluster.local."}
	var ids []uint16
	for i := range 300 {
		m := query(names[i%len(names)], dns.TypeA)
		ids = append(ids, m.Id)
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r.Id != id {
			t.Fatalf("reply %d has ID %d, want %d", i, r.Id, id)
		}
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixtureSnapshot(t)), TCPIdleTimeout: 100 * time.Millisecond})
	co, err := dns.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := co.ReadMsg(); err == nil {
		t.Fatal("read a message from a server that was sent none")
	} else if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("the server kept an idle connection open for 5s; want it closed after 100ms")
	}
}

// TestWildcardReplySource binds the wildcard address and asks at
// 127.0.0.2: the reply must come from 127.0.0.2, or a connected client
// (as every stub resolver is) never sees it.
func TestWildcardReplySource(t *testing.T) {
	s := serve(t, &Server{Addr: "0.0.0.0:0", Responder: responderOf(fixtureSnapshot(t))})
	port := s.UDPAddr().Port()
	for _, ip := range []string{"127.0.0.2", "127.0.0.1"} {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		r, _, err := c.Exchange(query("web.awx.svc.cluster.local.", dns.TypeA), fmt.Sprintf("%s:%d", ip, port))
		if err != nil || len(r.Answer) != 1 {
			t.Errorf("query to %s: %v %v", ip, err, r)
		}
	}
}

// TestTCPSlotsAreNotHeldByIdleClients opens idle connections: one client
// cannot take more than its share, and under pressure idle connections are
// closed within a second, so other clients get answers.
func TestTCPSlotsAreNotHeldByIdleClients(t *testing.T) {
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixtureSnapshot(t)),
		MaxTCPConns: 16, MaxTCPConnsPerClient: 12, TCPIdleTimeout: time.Minute})

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 13 {
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// The 13th connection of one client is over its share: closed at once.
	idle[12].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle[12].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a client's 13th connection was kept (read: %v)", err)
	}
	// 12 of 16 slots are taken: idle connections go after about a second.
	start := time.Now()
	idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("an idle connection under pressure was kept for 5s (read: %v)", err)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Errorf("idle connection closed after %v under pressure, want about 1s", waited)
	}
	// Another client is served.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	nc, err := d.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	co := &dns.Conn{Conn: nc}
	defer co.Close()
	co.SetDeadline(time.Now().Add(2 * time.Second))
	if err := co.WriteMsg(query("web.awx.svc.cluster.local.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 1 {
		t.Errorf("another client: %v %v", err, r)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
