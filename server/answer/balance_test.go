package answer

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

// firstAddress asks r as client and returns the first A record, as Go's
// resolver and glibc's getaddrinfo users connect to it.
func firstAddress(t testing.TB, r *Responder, s *Scratch, client netip.Addr) string {
	t.Helper()
	m := fixture.Query("app.bal.svc.cluster.local.", dns.TypeA)
	wire, _ := m.Pack()
	out, _ := r.Respond(wire, client, false, s)
	var reply dns.Msg
	if err := reply.Unpack(out); err != nil || len(reply.Answer) == 0 {
		t.Fatalf("no answer: %v %v", err, reply.String())
	}
	return reply.Answer[0].(*dns.A).A.String()
}

// spread summarises connections per endpoint: max/mean over all 10
// endpoints (unused ones count as 0).
func spread(perEndpoint map[string]int) (maxOverMean float64, counts []int) {
	total, most := 0, 0
	for _, n := range perEndpoint {
		total += n
		most = max(most, n)
		counts = append(counts, n)
	}
	for len(counts) < 10 {
		counts = append(counts, 0)
	}
	slices.Sort(counts)
	return float64(most) / (float64(total) / 10), counts
}

// TestBalanceFirstAddressClients simulates 1,000 clients that each connect
// to the first address of their answer, asking hdns directly and through
// node caches that hold one answer for the TTL (NodeLocal DNSCache), and
// counts connections per endpoint: the ground truth of balance.
func TestBalanceFirstAddressClients(t *testing.T) {
	const (
		clients = 1000
		rounds  = 30 // TTL periods: every client connects once per period
		caches  = 20 // nodes, each with clients/caches clients
	)
	var report strings.Builder
	results := map[string]float64{}
	for _, spec := range []string{"ordered", "least-loaded, first=1", "least-loaded", "round-robin", "random"} {
		for _, path := range []string{"direct", "node cache"} {
			snap := fixture.Balance(t, spec)
			r := &Responder{Snapshot: func() *zone.Snapshot { return snap }}
			var s Scratch
			conns := map[string]int{}
			for range rounds {
				if path == "direct" {
					for c := range clients {
						client := netip.AddrFrom4([4]byte{10, 1, byte(c >> 8), byte(c)})
						conns[firstAddress(t, r, &s, client)]++
					}
					continue
				}
				// Each cache asks once per TTL; all its clients use that answer.
				for c := range caches {
					cache := netip.AddrFrom4([4]byte{10, 2, 0, byte(c)})
					conns[firstAddress(t, r, &s, cache)] += clients / caches
				}
			}
			ratio, counts := spread(conns)
			results[spec+"/"+path] = ratio
			fmt.Fprintf(&report, "%-22s %-10s max/mean %5.2f  connections per endpoint %v\n", spec, path, ratio, counts)
		}
	}
	t.Logf("balance of %d first-address clients over 10 endpoints, %d TTL periods:\n%s", clients, rounds, report.String())
	fmt.Fprint(os.Stdout, report.String())
	for _, path := range []string{"direct", "node cache"} {
		if got := results["least-loaded, first=1/"+path]; got > 1.10 {
			t.Errorf("least-loaded, first=1 %s: max/mean %.2f, want ≤ 1.10", path, got)
		}
		if got := results["ordered/"+path]; got < 5 {
			t.Errorf("ordered %s: max/mean %.2f; the baseline should send everyone to the first endpoint", path, got)
		}
	}
}
