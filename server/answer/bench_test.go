package answer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

func packedQuery(b testing.TB, name string, qtype uint16, edns uint16) []byte {
	b.Helper()
	m := fixture.Query(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	wire, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

func ecsWire(b testing.TB, name string) []byte {
	wire, err := ecsQuery(name, netip.MustParseAddr("10.1.2.0"), 24).Pack()
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

// unknownOptionQuery is an EDNS query for name's A records with an EDNS
// option of an unassigned code.
func unknownOptionQuery(b testing.TB, name string) []byte {
	m := fixture.Query(name, dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{1}})
	wire, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

func benchRespond(b *testing.B, snap *zone.Snapshot, pkt []byte, tcp bool) {
	benchResponder(b, &Responder{Snapshot: func() *zone.Snapshot { return snap }, Zones: []string{"cluster.local."}}, pkt, tcp)
}

func benchResponder(b *testing.B, r *Responder, pkt []byte, tcp bool) {
	var s Scratch
	client := netip.MustParseAddr("127.0.0.1")
	out, _ := r.Respond(pkt, client, tcp, &s)
	if out == nil {
		b.Fatal("no reply")
	}
	negative := strings.Contains(b.Name(), "NXDOMAIN") || strings.Contains(b.Name(), "search-miss")
	if answers := binary.BigEndian.Uint16(out[6:]); negative != (answers == 0) {
		b.Fatalf("the reply has %d answers", answers)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Respond(pkt, client, tcp, &s)
	}
}

// BenchmarkRespond measures the answer path (parse, look up, choose, pack)
// without sockets, for 3- and 100-endpoint names in zones of 10 and 10,000
// Services (A-3-unknown-option: a query that miekg/dns parses).
func BenchmarkRespond(b *testing.B) {
	for _, services := range []int{10, 10000} {
		snap := fixture.Bench(b, services)
		for _, tc := range []struct {
			name string
			pkt  []byte
			tcp  bool
		}{
			{"A-3", packedQuery(b, "svc-1.awx.svc.cluster.local.", dns.TypeA, 1232), false},
			// As a 0x20 resolver asks: the answers' owners cannot point at
			// the question in full.
			{"A-3-mixed-case", packedQuery(b, "Svc-1.AWX.svc.cluster.local.", dns.TypeA, 1232), false},
			{"A-3-ECS", ecsWire(b, "svc-1.awx.svc.cluster.local."), false},
			{"A-3-unknown-option", unknownOptionQuery(b, "svc-1.awx.svc.cluster.local."), false},
			{"A-100-udp-truncated", packedQuery(b, "big.awx.svc.cluster.local.", dns.TypeA, 1232), false},
			{"A-100-tcp", packedQuery(b, "big.awx.svc.cluster.local.", dns.TypeA, 0), true},
			// A StatefulSet pod's own name: made from its Service's
			// members when asked.
			{"A-own-name", packedQuery(b, "svc-1-0.svc-1.awx.svc.cluster.local.", dns.TypeA, 1232), false},
			{"PTR", packedQuery(b, "1.0.0.10.in-addr.arpa.", dns.TypePTR, 1232), false},
			{"SRV-3", packedQuery(b, "_http._tcp.svc-1.awx.svc.cluster.local.", dns.TypeSRV, 1232), false},
			{"NXDOMAIN", packedQuery(b, "nope.awx.svc.cluster.local.", dns.TypeA, 1232), false},
			// What ndots:5 costs a pod: its first search-path tries for an
			// external name, each answered NXDOMAIN with the SOA.
			{"search-miss", packedQuery(b, "example.com.awx.svc.cluster.local.", dns.TypeA, 1232), false},
		} {
			b.Run(fmt.Sprintf("zone=%d/%s", services, tc.name), func(b *testing.B) { benchRespond(b, snap, tc.pkt, tc.tcp) })
		}
	}
	// A prefer-zone Service asked with ECS from a located podCIDR: the
	// client is located, the scope set and the answer's locality counted.
	b.Run("locality/A-3-ECS", func(b *testing.B) {
		pkt, err := ecsQuery("zonal.loc.svc.cluster.local.", netip.MustParseAddr("10.7.1.0"), 24).Pack()
		if err != nil {
			b.Fatal(err)
		}
		r := scopeCluster(b)
		r.Metrics = NewMetrics(prometheus.NewRegistry())
		benchResponder(b, r, pkt, false)
	})
}

// BenchmarkZoneSizeRatio reports how much slower a 3-endpoint answer is in
// a zone of 10,000 Services than in one of 10. Each iteration answers once
// from each zone, so both are measured under the same conditions: a ratio
// near 1 means lookups do not cost in proportion to zone size.
func BenchmarkZoneSizeRatio(b *testing.B) {
	pkt := packedQuery(b, "svc-1.awx.svc.cluster.local.", dns.TypeA, 1232)
	small, large := fixture.Bench(b, 10), fixture.Bench(b, 10000)
	rs := &Responder{Snapshot: func() *zone.Snapshot { return small }}
	rl := &Responder{Snapshot: func() *zone.Snapshot { return large }}
	var s Scratch
	client := netip.MustParseAddr("127.0.0.1")
	var inSmall, inLarge time.Duration
	for b.Loop() {
		t0 := time.Now()
		rs.Respond(pkt, client, false, &s)
		t1 := time.Now()
		rl.Respond(pkt, client, false, &s)
		inLarge += time.Since(t1)
		inSmall += t1.Sub(t0)
	}
	b.ReportMetric(float64(inSmall.Nanoseconds())/float64(b.N), "ns/query-zone10")
	b.ReportMetric(float64(inLarge.Nanoseconds())/float64(b.N), "ns/query-zone10000")
	b.ReportMetric(float64(inLarge)/float64(inSmall), "ratio")
}
