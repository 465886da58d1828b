package answer

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/server/wire"
)

// FuzzRespond feeds arbitrary packets to the responder. Whatever comes in,
// it must not panic, every reply must parse, carry the query's ID, be
// marked a response, and fit its transport, and it must be exactly the
// oracle's reply.
func FuzzRespond(f *testing.F) {
	r := responderOf(fixture.Cluster(f))
	r.PodRecords = true
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"web-headless.awx.svc.cluster.local.", dns.TypeA, 0},
		{"big.awx.svc.cluster.local.", dns.TypeA, 1232},
		{"_http._tcp.few.awx.svc.cluster.local.", dns.TypeSRV, 0},
		{"alias.awx.svc.cluster.local.", dns.TypeANY, 4096},
		{"10.217.244.10.in-addr.arpa.", dns.TypePTR, 0},
		{"nope.example.", dns.TypeTXT, 512},
		{`a\.b.awx.svc.cluster.local.`, dns.TypeA, 1232},
		{"10-1-2-3.awx.pod.cluster.local.", dns.TypeA, 0},
	} {
		m := fixture.Query(q.name, q.qtype)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, false)
		f.Add(wire, true)
	}
	f.Add([]byte{0, 1, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0}, false) // UPDATE, no question
	for _, edns := range []bool{false, true} {
		f.Add(signedQuery(f, "web-headless.awx.svc.cluster.local.", "key.", edns), false)
	}
	var o oracle
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		var s Scratch
		client := netip.MustParseAddr("127.0.0.1")
		out, result := r.Respond(pkt, client, tcp, &s)
		if want, _ := o.respond(r, pkt, client, tcp); !bytes.Equal(out, want) {
			t.Fatalf("Respond replied\n%x\nthe oracle\n%x", out, want)
		}
		if result != Reply {
			if len(pkt) >= wire.HeaderLen && pkt[2]&0x80 == 0 {
				t.Fatalf("no reply to a %d-byte query", len(pkt))
			}
			return
		}
		limit := wire.MaxUDPSize
		if tcp {
			limit = dns.MaxMsgSize
		}
		if len(out) > limit {
			t.Fatalf("reply of %d bytes over a %d-byte transport", len(out), limit)
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatalf("reply does not parse: %v\n%x", err, out)
		}
		if !m.Response || m.Id != binary.BigEndian.Uint16(pkt) {
			t.Fatalf("reply header %s for query ID %d", m.MsgHdr.String(), binary.BigEndian.Uint16(pkt))
		}
	})
}
