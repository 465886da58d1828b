package answer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"

	k8s "github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

func TestPolicyAnnotationShapesAnswers(t *testing.T) {
	s := responderOf(fixture.Balance(t, "least-loaded, first=2, ttl=30"))
	r := exchange(t, s, fixture.Query("app.bal.svc.cluster.local.", dns.TypeA), "udp")
	if len(r.Answer) != 2 || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("first=2, ttl=30: got %v", r.Answer)
	}
	// The hostname records of the Service carry its TTL too.
	r = exchange(t, s, fixture.Query("10-9-0-1.app.bal.svc.cluster.local.", dns.TypeA), "udp")
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 30 {
		t.Errorf("hostname record: %v, want TTL 30", r.Answer)
	}
	// Least-loaded spreads first places over the endpoints.
	firsts := map[string]bool{}
	for range 20 {
		r := exchange(t, s, fixture.Query("app.bal.svc.cluster.local.", dns.TypeA), "udp")
		firsts[r.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) < 8 {
		t.Errorf("20 queries put only %d distinct endpoints first", len(firsts))
	}
}

func TestBadAnnotationServesDefault(t *testing.T) {
	snap := balanceZoneUnchecked(t, "fastest, first=1")
	if len(snap.PolicyErrors) != 1 || !strings.Contains(snap.PolicyErrors[0].Err.Error(), "fastest") {
		t.Fatalf("policy errors %v", snap.PolicyErrors)
	}
	s := responderOf(snap)
	if r := exchange(t, s, fixture.Query("app.bal.svc.cluster.local.", dns.TypeA), "udp"); len(r.Answer) != 10 {
		t.Errorf("bad annotation: %d answers, want all 10 of the default policy", len(r.Answer))
	}
}

func balanceZoneUnchecked(t testing.TB, spec string) *zone.Snapshot {
	t.Helper()
	slice := k8s.EndpointSlice{Namespace: "bal", Name: "app-1", Service: "app"}
	for i := range 10 {
		slice.Endpoints = append(slice.Endpoints, k8s.Endpoint{Address: fmt.Sprintf("10.9.0.%d", i+1)})
	}
	svc := k8s.Service{Namespace: "bal", Name: "app", Headless: true,
		Annotations: map[string]string{zone.AnnotationPolicy: spec}}
	return fixture.Build(t, nil, svc.API(), slice.API())
}

func ecsQuery(name string, addr netip.Addr, bits uint8) *dns.Msg {
	m := fixture.Query(name, dns.TypeA)
	m.SetEdns0(1232, false)
	family := uint16(1)
	if addr.Is6() {
		family = 2
	}
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: bits, Address: addr.AsSlice()})
	return m
}

func replyECS(r *dns.Msg) *dns.EDNS0_SUBNET {
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				return e
			}
		}
	}
	return nil
}

// TestClientSubnetKeysSticky checks that a sticky Service keys on the EDNS
// Client Subnet address, not on the asker (a forwarder), and echoes the
// option with a scope that covers the prefix it keyed on.
func TestClientSubnetKeysSticky(t *testing.T) {
	s := responderOf(fixture.Balance(t, "sticky, first=1"))
	pods := map[string]string{}
	for i := range 64 {
		client := netip.AddrFrom4([4]byte{192, 168, byte(i), 0})
		var got string
		for range 3 {
			r := exchange(t, s, ecsQuery("app.bal.svc.cluster.local.", client, 24), "udp")
			e := replyECS(r)
			if e == nil || e.SourceScope != 24 || e.SourceNetmask != 24 {
				t.Fatalf("ECS in reply %v, want source 24 scope 24", e)
			}
			a := r.Answer[0].(*dns.A).A.String()
			if got != "" && a != got {
				t.Fatalf("client %s got %s then %s", client, got, a)
			}
			got = a
		}
		pods[client.String()] = got
	}
	distinct := map[string]bool{}
	for _, p := range pods {
		distinct[p] = true
	}
	if len(distinct) < 6 {
		t.Errorf("64 client subnets share %d endpoints: the key is not the subnet", len(distinct))
	}

	// An answer that does not depend on the client has scope 0.
	r := exchange(t, s, ecsQuery("dns-version.cluster.local.", netip.MustParseAddr("192.168.1.0"), 24), "udp")
	if e := replyECS(r); e == nil || e.SourceScope != 0 {
		t.Errorf("client-independent answer: ECS %v, want scope 0", e)
	}
	// A malformed option is a format error (RFC 7871 7.1.1).
	m := ecsQuery("app.bal.svc.cluster.local.", netip.MustParseAddr("192.168.1.0"), 24)
	m.IsEdns0().Option[0].(*dns.EDNS0_SUBNET).SourceScope = 8
	if r := exchange(t, s, m, "udp"); r.Rcode != dns.RcodeFormatError {
		t.Errorf("ECS with a scope in the query: %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
}

func TestSRVPrioritiesFollowThePolicy(t *testing.T) {
	for _, tc := range []struct {
		spec           string
		wantPriorities []uint16
	}{
		{"ordered", []uint16{0, 0, 0}},
		{"round-robin, first=3", []uint16{0, 1, 2}},
	} {
		s := responderOf(fixture.Build(t, nil,
			k8s.Service{Namespace: "p", Name: "s", Headless: true,
				Annotations: map[string]string{zone.AnnotationPolicy: tc.spec}}.API(),
			k8s.EndpointSlice{Namespace: "p", Name: "s-1", Service: "s",
				Ports:     []k8s.Port{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
				Endpoints: []k8s.Endpoint{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}, {Address: "10.0.0.3"}},
			}.API()))
		var firstTargets []string
		for range 3 {
			r := exchange(t, s, fixture.Query("_http._tcp.s.p.svc.cluster.local.", dns.TypeSRV), "udp")
			var got []uint16
			for _, rr := range r.Answer {
				got = append(got, rr.(*dns.SRV).Priority)
			}
			if !slices.Equal(got, tc.wantPriorities) {
				t.Errorf("%s: priorities %v, want %v", tc.spec, got, tc.wantPriorities)
			}
			firstTargets = append(firstTargets, r.Answer[0].(*dns.SRV).Target)
		}
		if tc.spec != "ordered" && firstTargets[0] == firstTargets[1] {
			t.Errorf("%s: the first target did not rotate: %v", tc.spec, firstTargets)
		}
	}
}
