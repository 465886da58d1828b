package answer

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/internal/fixture"
)

// signedQuery is a query for name signed with key, a key hdns does not
// know, by miekg/dns as a client signs it.
func signedQuery(t testing.TB, name, key string, edns bool) []byte {
	t.Helper()
	m := fixture.Query(name, dns.TypeA)
	if edns {
		m.SetEdns0(1232, false)
	}
	m.SetTsig(key, dns.HmacSHA256, 300, time.Now().Unix())
	pkt, _, err := dns.TsigGenerate(m, "c2VjcmV0c2VjcmV0c2VjcmV0", "", false)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

// TestTSIGUnknownKey: every key is unknown to hdns, so a signed query gets
// NOTAUTH and an unsigned TSIG with error BADKEY (RFC 8945 5.2.1), in and
// out of the zones, with and without EDNS, as the oracle answers.
func TestTSIGUnknownKey(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	r.ForwardAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	var o oracle
	client := netip.MustParseAddr("127.0.0.1")
	for _, name := range []string{"web-headless.awx.svc.cluster.local.", "nope.example."} {
		for _, edns := range []bool{false, true} {
			pkt := signedQuery(t, name, "Some-Key.", edns)
			out, result := r.Respond(pkt, client, false, new(Scratch))
			if want, _ := o.respond(r, pkt, client, false); result != Reply || !slices.Equal(out, want) {
				t.Fatalf("%s edns=%v: Respond %v\n%x\nthe oracle\n%x", name, edns, result, out, want)
			}
			var m dns.Msg
			if err := m.Unpack(out); err != nil {
				t.Fatal(err)
			}
			tsig := m.IsTsig()
			if m.Rcode != dns.RcodeNotAuth || len(m.Answer) != 0 || m.Authoritative || len(m.Question) != 1 || tsig == nil {
				t.Fatalf("%s edns=%v: got\n%s", name, edns, &m)
			}
			if tsig.Error != dns.RcodeBadKey || tsig.MACSize != 0 || tsig.MAC != "" || tsig.OrigId != m.Id ||
				tsig.Hdr.Name != "Some-Key." || tsig.Algorithm != dns.HmacSHA256 || tsig.Hdr.Class != dns.ClassANY {
				t.Errorf("%s edns=%v: TSIG %s", name, edns, tsig)
			}
			if (m.IsEdns0() != nil) != edns {
				t.Errorf("%s edns=%v: OPT %v", name, edns, m.IsEdns0())
			}
		}
	}
}

// TestTSIGMisplaced: a TSIG record anywhere but last, or two of them, is a
// format error (RFC 8945 5.2).
func TestTSIGMisplaced(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	var o oracle
	client := netip.MustParseAddr("127.0.0.1")
	tsig := &dns.TSIG{Hdr: dns.RR_Header{Name: "k.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: dns.HmacSHA256, TimeSigned: 1, Fudge: 300}
	a := &dns.A{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{1, 2, 3, 4}}
	for desc, edit := range map[string]func(*dns.Msg){
		"in the answer":    func(m *dns.Msg) { m.Answer = []dns.RR{tsig} },
		"before a record":  func(m *dns.Msg) { m.Extra = []dns.RR{tsig, a} },
		"twice":            func(m *dns.Msg) { m.Extra = []dns.RR{tsig, tsig} },
		"in the authority": func(m *dns.Msg) { m.Ns = []dns.RR{tsig}; m.Extra = []dns.RR{tsig} },
	} {
		m := fixture.Query("web-headless.awx.svc.cluster.local.", dns.TypeA)
		edit(m)
		pkt, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out, _ := r.Respond(pkt, client, false, new(Scratch))
		if want, _ := o.respond(r, pkt, client, false); !slices.Equal(out, want) {
			t.Fatalf("%s: Respond\n%x\nthe oracle\n%x", desc, out, want)
		}
		var reply dns.Msg
		if err := reply.Unpack(out); err != nil || reply.Rcode != dns.RcodeFormatError || reply.IsTsig() != nil {
			t.Errorf("%s: %v\n%s", desc, err, &reply)
		}
	}
}

// TestTSIGTooLong: a BADKEY reply over the client's 512 bytes goes without
// its TSIG and with TC, so that the client asks again over TCP, where it
// gets the TSIG.
func TestTSIGTooLong(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	var o oracle
	client := netip.MustParseAddr("127.0.0.1")
	long := strings.Repeat(strings.Repeat("k", 62)+".", 4)
	pkt := signedQuery(t, strings.Repeat(strings.Repeat("q", 63)+".", 3)+"cluster.local.", long, false)
	for _, tcp := range []bool{false, true} {
		out, _ := r.Respond(pkt, client, tcp, new(Scratch))
		if want, _ := o.respond(r, pkt, client, tcp); !slices.Equal(out, want) {
			t.Fatalf("tcp=%v: Respond\n%x\nthe oracle\n%x", tcp, out, want)
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if m.Rcode != dns.RcodeNotAuth || m.Truncated == tcp || (m.IsTsig() != nil) != tcp || (!tcp && len(out) > 512) {
			t.Errorf("tcp=%v: %d bytes\n%s", tcp, len(out), &m)
		}
	}
}
