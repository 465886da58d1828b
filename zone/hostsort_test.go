package zone

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hdns-dev/hdns/internal/fixture"
)

// TestSortByHostOrdersAsStrings: sortByHost orders hostnames as their
// strings compare, candidates of one hostname by index: hostnames of
// every kind, or only dashed IPv4 addresses (sorted as integers).
func TestSortByHostOrdersAsStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	label := func() string {
		const alphabet = "ab0-"
		b := []byte{'a' + byte(r.IntN(2))}
		for range r.IntN(20) {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		return string(b)
	}
	var b builder
	for round := range 300 {
		var cands []*candidate
		seen := map[netip.Addr]bool{}
		for range r.IntN(60) {
			c := &candidate{v4: netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(3)), byte(r.IntN(256)), byte(r.IntN(120))})}
			if seen[c.v4] {
				continue
			}
			seen[c.v4] = true
			c.id.Hostname, c.host = string(appendDashed(nil, c.v4)), hostFrom4
			switch {
			case round%3 == 0:
			case r.IntN(4) == 0 && len(cands) > 0:
				c.id.Hostname, c.host = cands[r.IntN(len(cands))].id.Hostname, hostFromHostname
			case r.IntN(2) == 0:
				c.id.Hostname, c.host = label(), hostFromHostname
			}
			cands = append(cands, c)
		}
		hosts := make([]int32, len(cands))
		for i := range hosts {
			hosts[i] = int32(i)
		}
		r.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
		want := slices.Clone(hosts)
		slices.SortFunc(want, func(x, y int32) int {
			return cmp.Or(strings.Compare(cands[x].id.Hostname, cands[y].id.Hostname), cmp.Compare(x, y))
		})
		b.sortByHost(hosts, cands)
		if !slices.Equal(hosts, want) {
			t.Fatalf("round %d: sorted %v, want %v", round, hosts, want)
		}
	}
}

// TestHostnameRepeatsDashedName: an endpoint whose hostname spells
// another's dashed address shares its own name, so that both may repeat
// SRV records; endpoints named from their addresses alone never do.
func TestHostnameRepeatsDashedName(t *testing.T) {
	for _, tc := range []struct {
		hostname string
		repeats  bool
	}{{"10-0-0-1", true}, {"", false}} {
		svcs, eps := shrunk(t,
			fixture.Service{Namespace: "ns", Name: "web", Headless: true}.API(),
			fixture.EndpointSlice{Namespace: "ns", Name: "web-a", Service: "web",
				Ports:     []fixture.Port{{Name: "http", Port: 80}},
				Endpoints: []fixture.Endpoint{{Address: "10.0.0.1"}, {Address: "10.0.0.2", Hostname: tc.hostname}},
			}.API(),
		)
		snap := Build(testOptions(t), 1, svcs, eps)
		_, n := snap.Lookup("web.ns.svc.cluster.local.")
		if n == nil || n.ChosenSRV == nil {
			t.Fatalf("hostname %q: no SRV choice", tc.hostname)
		}
		for i, m := range n.ChosenSRV.Set.members {
			if got := m.flags&repeatsSRV != 0; got != tc.repeats {
				t.Errorf("hostname %q: member %d repeats %v, want %v", tc.hostname, i, got, tc.repeats)
			}
		}
	}
}
