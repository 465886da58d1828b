package rrl

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// reply packs a reply to name with n A records and an OPT, rcode rcode.
func reply(t testing.TB, name string, rcode, n int) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Response, m.Rcode = true, rcode
	for i := range n {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: []byte{10, 0, 0, byte(i)}})
	}
	m.SetEdns0(1232, false)
	out, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// limiter is a Limiter on a clock the test turns.
func limiter(t testing.TB, c Config) (*Limiter, *uint64) {
	t.Helper()
	l, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	var now uint64
	l.now = func() uint64 { return now }
	return l, &now
}

// outcomes sends n copies of pkt from client through l and counts the
// replies sent whole, slipped and dropped.
func outcomes(l *Limiter, client string, pkt []byte, n int) (whole, slipped, dropped int) {
	for range n {
		out := l.Limit(netip.MustParseAddr(client), append([]byte(nil), pkt...))
		switch {
		case out == nil:
			dropped++
		case len(out) == len(pkt):
			whole++
		default:
			slipped++
		}
	}
	return whole, slipped, dropped
}

func TestRateWindowAndSlip(t *testing.T) {
	l, now := limiter(t, Config{ResponsesPerSecond: 5, Window: 2 * time.Second, Slip: 2})
	pkt := reply(t, "web.awx.svc.cluster.local.", dns.RcodeSuccess, 20)
	if w, s, d := outcomes(l, "192.0.2.1", pkt, 25); w != 5 || s != 10 || d != 10 {
		t.Errorf("second 0: %d whole, %d slipped, %d dropped; want 5, 10, 10", w, s, d)
	}
	// The debt is at most Window × rate: it takes two seconds to pay.
	*now = 2
	if w, _, _ := outcomes(l, "192.0.2.77", pkt, 1); w != 0 {
		t.Errorf("second 2: the prefix is answered before its debt is paid")
	}
	*now = 4
	if w, _, _ := outcomes(l, "192.0.2.1", pkt, 10); w != 5 {
		t.Errorf("second 4: %d whole, want 5", w)
	}
	// Other prefixes, other names and case-folded names.
	for _, tc := range []struct {
		client, name string
		whole        int
	}{
		{"192.0.3.1", "web.awx.svc.cluster.local.", 5},
		{"192.0.2.1", "db.awx.svc.cluster.local.", 5},
		{"192.0.2.1", "WEB.awx.svc.cluster.local.", 0},
		{"2001:db8:0:ff::1", "web.awx.svc.cluster.local.", 5},
		{"2001:db8:0:1::1", "web.awx.svc.cluster.local.", 0}, // same /56
		{"2001:db8:0:100::1", "web.awx.svc.cluster.local.", 5},
	} {
		if w, _, _ := outcomes(l, tc.client, reply(t, tc.name, dns.RcodeSuccess, 1), 10); w != tc.whole {
			t.Errorf("%s asking %s: %d whole, want %d", tc.client, tc.name, w, tc.whole)
		}
	}
}

func TestErrorsShareAnAccountPerPrefix(t *testing.T) {
	l, _ := limiter(t, Config{ResponsesPerSecond: 50, ErrorsPerSecond: 3})
	whole := 0
	for _, name := range []string{"a.example.", "b.example.", "c.example.", "d.example.", "e.example."} {
		w, _, _ := outcomes(l, "198.51.100.9", reply(t, name, dns.RcodeNameError, 0), 1)
		whole += w
	}
	if whole != 3 {
		t.Errorf("%d NXDOMAIN for five names sent whole, want 3", whole)
	}
	if w, _, _ := outcomes(l, "198.51.100.9", reply(t, "a.example.", dns.RcodeSuccess, 1), 1); w != 1 {
		t.Error("answers were limited by the errors' account")
	}
}

func TestSlipIsQuestionOnly(t *testing.T) {
	l, _ := limiter(t, Config{ResponsesPerSecond: 1, Slip: 1})
	pkt := reply(t, "Big.awx.svc.cluster.local.", dns.RcodeSuccess, 40)
	l.Limit(netip.MustParseAddr("203.0.113.1"), append([]byte(nil), pkt...))
	out := l.Limit(netip.MustParseAddr("203.0.113.1"), append([]byte(nil), pkt...))
	var m dns.Msg
	if err := m.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || len(m.Question) != 1 || m.Question[0].Name != "Big.awx.svc.cluster.local." ||
		len(m.Answer)+len(m.Ns)+len(m.Extra) != 0 || len(out) != 12+len("Big.awx.svc.cluster.local.")+1+4 {
		t.Errorf("slip of %d bytes:\n%s", len(out), &m)
	}
	q := new(dns.Msg).SetQuestion("Big.awx.svc.cluster.local.", dns.TypeA)
	if query, _ := q.Pack(); len(out) > len(query) {
		t.Errorf("slip of %d bytes for a %d-byte query", len(out), len(query))
	}
}

func TestSlipZeroDropsAll(t *testing.T) {
	l, _ := limiter(t, Config{ResponsesPerSecond: 1})
	if w, s, d := outcomes(l, "192.0.2.1", reply(t, "x.example.", 0, 1), 10); w != 1 || s != 0 || d != 9 {
		t.Errorf("%d whole, %d slipped, %d dropped; want 1, 0, 9", w, s, d)
	}
	var nilLimiter *Limiter
	if pkt := reply(t, "x.example.", 0, 1); len(nilLimiter.Limit(netip.MustParseAddr("192.0.2.1"), pkt)) != len(pkt) {
		t.Error("a nil Limiter limited")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{ResponsesPerSecond: 10, Window: time.Millisecond},
		{ResponsesPerSecond: 1 << 22},
		{ResponsesPerSecond: 10, Slip: -1},
		{ResponsesPerSecond: 10, IPv4PrefixLen: 33},
		{ResponsesPerSecond: 10, Accounts: 1 << 25},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

// BenchmarkLimit: replies that stay under their rate (from 1,024
// prefixes) and replies that are limited (from one), from every
// goroutine; neither allocates.
func BenchmarkLimit(b *testing.B) {
	var clients []netip.Addr
	for i := range 1024 {
		clients = append(clients, netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}))
	}
	for _, tc := range []struct {
		name    string
		rate    int
		clients []netip.Addr
	}{
		{"under", 1 << 20, clients},
		{"limited", 1, clients[:1]},
	} {
		l, err := New(Config{ResponsesPerSecond: tc.rate, Window: time.Second, Slip: 2})
		if err != nil {
			b.Fatal(err)
		}
		pkt := reply(b, "web-headless.awx.svc.cluster.local.", dns.RcodeSuccess, 3)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, len(pkt))
				for i := 0; pb.Next(); i++ {
					copy(buf, pkt)
					l.Limit(tc.clients[i%len(tc.clients)], buf)
				}
			})
		})
	}
}
