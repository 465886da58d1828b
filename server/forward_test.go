package server

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	k8s "github.com/hdns-dev/hdns/internal/fixture"
	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/forward"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

// upstreamServer runs a second hdns serving the fixture cluster in zone
// "upstream.test." on 127.0.0.1: a real upstream resolver for the
// forwarder.
func upstreamServer(t *testing.T) *Server {
	t.Helper()
	opts := fixture.Options(t)
	opts.Zones = []string{"upstream.test."}
	opts.ReverseZones = nil
	web := k8s.Service{Namespace: "awx", Name: "web", ClusterIPs: []string{"10.96.0.7"}}
	snap := fixture.Build(t, opts, append(fixture.BigService("big", 3, 100), web.API())...)
	return serve(t, &Server{Addr: "127.0.0.1:0", Responder: &answer.Responder{Snapshot: func() *zone.Snapshot { return snap }, Zones: opts.Zones}})
}

// frontServer serves the fixture zone and forwards the rest to upstreams
// for clients in allow.
func frontServer(t *testing.T, f *forward.Forwarder, allow ...string) *Server {
	t.Helper()
	r := responderOf(fixture.Cluster(t))
	for _, a := range allow {
		r.ForwardAllow = append(r.ForwardAllow, netip.MustParsePrefix(a))
	}
	return serve(t, &Server{Addr: "127.0.0.1:0", Responder: r, Forward: f})
}

func TestForwarding(t *testing.T) {
	up := upstreamServer(t)
	s := frontServer(t, &forward.Forwarder{Upstreams: []netip.AddrPort{up.UDPAddr()}}, "127.0.0.0/8")

	m := fixture.Query("WEB.awx.svc.Upstream.Test.", dns.TypeA)
	m.RecursionDesired = true
	r := exchange(t, s, m, "udp")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.RecursionAvailable || r.Authoritative || r.Id != m.Id || r.Question[0].Name != m.Question[0].Name {
		t.Fatalf("forwarded answer: %v", r)
	}
	// Hdns's own zones are answered by hdns, without RA.
	r = exchange(t, s, fixture.Query("web.awx.svc.cluster.local.", dns.TypeA), "udp")
	if !r.Authoritative || r.RecursionAvailable || len(r.Answer) != 1 {
		t.Errorf("in-zone answer changed by forwarding: %v", r)
	}
	// Truncated over UDP upstream, complete over TCP to the client.
	r = exchange(t, s, fixture.Query("big.awx.svc.upstream.test.", dns.TypeA), "tcp")
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("100 records through the forwarder over TCP: TC=%v, %d answers", r.Truncated, len(r.Answer))
	}
	r = exchange(t, s, fixture.Query("big.awx.svc.upstream.test.", dns.TypeA), "udp")
	if !r.Truncated {
		t.Errorf("100 records through the forwarder over UDP without EDNS: not truncated")
	}
	// Names nobody serves come back as the upstream says.
	r = exchange(t, s, fixture.Query("nope.example.", dns.TypeA), "udp")
	if r.Rcode != dns.RcodeRefused || !r.RecursionAvailable {
		t.Errorf("upstream's REFUSED: %v", r)
	}
}

func TestForwardingOnlyForAllowedClients(t *testing.T) {
	up := upstreamServer(t)
	s := frontServer(t, &forward.Forwarder{Upstreams: []netip.AddrPort{up.UDPAddr()}}, "10.0.0.0/8")
	r := exchange(t, s, fixture.Query("web.awx.svc.upstream.test.", dns.TypeA), "udp")
	if r.Rcode != dns.RcodeRefused || r.RecursionAvailable || len(r.Answer) != 0 {
		t.Errorf("client outside the allow list: %v, want REFUSED", r)
	}
}
