package zone

import (
	"net/netip"
	"slices"
	"testing"
)

// TestReversePrefixesDecideAsNames: where reversePrefixes says the reverse
// zones' prefixes decide, addPTR adds the records that spelling each
// address's reverse name and finding its apex adds.
func TestReversePrefixesDecideAsNames(t *testing.T) {
	addrs := []string{"10.0.0.1", "10.1.2.3", "192.168.1.1", "fd00::1", "2001:db8::5", "::ffff:10.0.0.1", "fe80::1%eth0"}
	for _, tc := range []struct {
		zones, reverse []string
		exact          bool
	}{
		{[]string{"cluster.local."}, []string{"in-addr.arpa.", "ip6.arpa."}, true},
		{[]string{"cluster.local."}, []string{"10.in-addr.arpa."}, true},
		{[]string{"cluster.local."}, []string{"1.10.in-addr.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa."}, true},
		{[]string{"cluster.local.", "example."}, []string{"in-addr.arpa."}, true},
		{[]string{"cluster.local."}, []string{"arpa."}, false},
		{[]string{"cluster.local."}, []string{"in-addr.arpa.", "10.in-addr.arpa."}, false},
		{[]string{"cluster.local."}, []string{"1.0.0.10.in-addr.arpa."}, false},
		{[]string{"arpa."}, []string{"in-addr.arpa."}, false},
	} {
		opts := &Options{Zones: tc.zones, ReverseZones: tc.reverse, TTL: 5}
		b := newBuilder(opts, 1)
		if b.reverseExact != tc.exact {
			t.Errorf("zones %v, reverse %v: exact %v, want %v", tc.zones, tc.reverse, b.reverseExact, tc.exact)
		}
		if !b.reverseExact {
			continue
		}
		set := &EndpointSet{Namespace: "ns", Service: "svc", owner: "svc.ns.svc.cluster.local."}
		for _, a := range addrs {
			ip := netip.MustParseAddr(a)
			b.scratch.ptrRecs = ptrRecords{}
			b.addPTR(ip, ptrTarget{set: set})
			fast := b.scratch.ptrRecs
			b.scratch.ptrRecs, b.reverseExact = ptrRecords{}, false
			b.addPTR(ip, ptrTarget{set: set})
			slow := b.scratch.ptrRecs
			b.reverseExact = true
			if !slices.Equal(fast.v4, slow.v4) || !slices.Equal(fast.v6, slow.v6) {
				t.Errorf("reverse %v, %s: by prefix %+v, by name %+v", tc.reverse, a, fast, slow)
			}
		}
	}
}
