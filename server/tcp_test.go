package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hdns-dev/hdns/server/forward"
	"github.com/hdns-dev/hdns/server/internal/fixture"
)

// dialFrom opens a TCP connection to s from the loopback address ip.
func dialFrom(t *testing.T, s *Server, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedBy reports whether the server closed c before deadline.
func closedBy(c net.Conn, deadline time.Time) bool {
	c.SetReadDeadline(deadline)
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

// TestTCPConnectsDoNotKeepIdleConnectionsOpen: 600 idle connections (more
// than half of the 1,024 slots) and a bare connect every 0.5 s. Each
// connect must not move other connections' deadlines: the idle ones are
// closed about a second after their last activity, and a client asking
// one question per connection meanwhile gets every answer.
func TestTCPConnectsDoNotKeepIdleConnectionsOpen(t *testing.T) {
	metrics := NewMetrics(prometheus.NewRegistry())
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixture.Cluster(t)), Metrics: metrics})
	var idle []net.Conn
	for i := range 600 {
		idle = append(idle, dialFrom(t, s, fmt.Sprintf("127.0.0.%d", 2+i/100)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.20")}}
				if c, err := d.Dial("tcp", s.TCPAddr().String()); err == nil {
					defer c.Close()
				}
			}
		}
	})
	answered := 0
	for range 5 {
		co := &dns.Conn{Conn: dialFrom(t, s, "127.0.0.30")}
		co.SetDeadline(time.Now().Add(2 * time.Second))
		if err := co.WriteMsg(fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)); err == nil {
			if r, err := co.ReadMsg(); err == nil && len(r.Answer) == 1 {
				answered++
			}
		}
		co.Close()
		time.Sleep(500 * time.Millisecond)
	}
	deadline := time.Now().Add(3 * time.Second)
	open := 0
	for _, c := range idle {
		if !closedBy(c, deadline) {
			open++
		}
	}
	close(stop)
	wg.Wait()
	if open > 0 {
		t.Errorf("%d of 600 idle connections still open 5.5 s into connects every 0.5 s, want all closed about 1 s after their last activity", open)
	}
	if answered != 5 {
		t.Errorf("a client got %d of 5 TCP answers during the flood", answered)
	}
	if got := testutil.ToFloat64(metrics.closes.WithLabelValues("idle")); got < 600 {
		t.Errorf(`hdns_dns_tcp_closed_total{reason="idle"} = %v, want at least 600`, got)
	}
	if got := testutil.ToFloat64(metrics.connections.WithLabelValues("accepted")); got < 605 {
		t.Errorf(`hdns_dns_tcp_connections_total{result="accepted"} = %v, want at least 605`, got)
	}
}

// TestTCPUnfinishedMessageIsClosedSoon: a connection that begins a message
// (half its length, or its length and half its body) and stalls is closed
// after the message timeout, not the idle timeout.
func TestTCPUnfinishedMessageIsClosedSoon(t *testing.T) {
	metrics := NewMetrics(prometheus.NewRegistry())
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixture.Cluster(t)), Metrics: metrics,
		TCPIdleTimeout: time.Minute, TCPMessageTimeout: 200 * time.Millisecond})
	for name, begun := range map[string][]byte{"half a length": {0}, "half a body": {0, 40, 1, 2, 3}} {
		c := dialFrom(t, s, "127.0.0.1")
		if _, err := c.Write(begun); err != nil {
			t.Fatal(err)
		}
		if !closedBy(c, time.Now().Add(5*time.Second)) {
			t.Errorf("%s: the connection was still open after 5 s; want it closed after the 200 ms message timeout", name)
		}
	}
	// An idle connection is not: its timeout is a minute.
	if c := dialFrom(t, s, "127.0.0.1"); closedBy(c, time.Now().Add(time.Second)) {
		t.Error("an idle connection was closed within a second; its idle timeout is a minute")
	}
	if got := testutil.ToFloat64(metrics.closes.WithLabelValues("unfinished_message")); got != 2 {
		t.Errorf(`hdns_dns_tcp_closed_total{reason="unfinished_message"} = %v, want 2`, got)
	}
}

// TestTCPRefusalsAreCounted: connections over a client's share are closed
// at once and counted by the limit that refused them.
func TestTCPRefusalsAreCounted(t *testing.T) {
	metrics := NewMetrics(prometheus.NewRegistry())
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixture.Cluster(t)), Metrics: metrics,
		MaxTCPConns: 4, MaxTCPConnsPerClient: 2, TCPIdleTimeout: time.Minute})
	var conns []net.Conn
	for range 3 {
		conns = append(conns, dialFrom(t, s, "127.0.0.1"))
	}
	if !closedBy(conns[2], time.Now().Add(2*time.Second)) {
		t.Error("a client's third connection was kept; its share is 2")
	}
	conns = append(conns, dialFrom(t, s, "127.0.0.2"), dialFrom(t, s, "127.0.0.2"), dialFrom(t, s, "127.0.0.3"))
	if !closedBy(conns[5], time.Now().Add(2*time.Second)) {
		t.Error("a fifth connection was kept; the limit is 4")
	}
	for result, want := range map[string]float64{"accepted": 4, "client_limit": 1, "total_limit": 1} {
		if got := testutil.ToFloat64(metrics.connections.WithLabelValues(result)); got != want {
			t.Errorf(`hdns_dns_tcp_connections_total{result=%q} = %v, want %v`, result, got, want)
		}
	}
}

// slowUpstream is a UDP resolver on 127.0.0.1 that answers every query
// with one A record after delay.
func slowUpstream(t *testing.T, delay time.Duration) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			go func() {
				time.Sleep(delay)
				r := new(dns.Msg).SetReply(q)
				r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.IPv4(192, 0, 2, 1)})
				if out, err := r.Pack(); err == nil {
					pc.WriteToUDPAddrPort(out, from)
				}
			}()
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestTCPShutdownFinishesQueriesInFlight: when Serve's context ends, an
// idle TCP connection is closed at once and new ones are not accepted,
// while a query being answered (here, waiting 300 ms for its upstream)
// and a query half sent are both answered before their connections close;
// one that stalls inside its message is closed after the message timeout,
// and Serve returns then.
func TestTCPShutdownFinishesQueriesInFlight(t *testing.T) {
	r := responderOf(fixture.Cluster(t))
	r.ForwardAllow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s := &Server{Addr: "127.0.0.1:0", Responder: r, TCPIdleTimeout: time.Minute, TCPMessageTimeout: time.Second,
		Forward: &forward.Forwarder{Upstreams: []netip.AddrPort{slowUpstream(t, 300*time.Millisecond)}}}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()

	idle := dialFrom(t, s, "127.0.0.1")
	answering := &dns.Conn{Conn: dialFrom(t, s, "127.0.0.1")}
	if err := answering.WriteMsg(fixture.Query("www.example.org.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	query, err := fixture.Query("web.awx.svc.cluster.local.", dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	framed := append([]byte{byte(len(query) >> 8), byte(len(query))}, query...)
	halfSent := dialFrom(t, s, "127.0.0.1")
	stalled := dialFrom(t, s, "127.0.0.1")
	for _, c := range []net.Conn{halfSent, stalled} {
		if _, err := c.Write(framed[:7]); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the forwarded query waits for its upstream
	stopped := time.Now()
	cancel()

	if !closedBy(idle, stopped.Add(500*time.Millisecond)) {
		t.Error("an idle connection was still open 500 ms after Serve's context ended")
	}
	time.Sleep(50 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", s.TCPAddr().String(), time.Second); err == nil {
		if !closedBy(c, time.Now().Add(500*time.Millisecond)) {
			t.Error("a new connection was accepted and kept after Serve's context ended")
		}
		c.Close()
	}
	if _, err := halfSent.Write(framed[7:]); err != nil {
		t.Fatalf("finishing a half-sent query: %v", err)
	}
	for name, c := range map[string]*dns.Conn{"half sent": {Conn: halfSent}, "being answered": answering} {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		reply, err := c.ReadMsg()
		if err != nil || reply.Rcode != dns.RcodeSuccess || len(reply.Answer) != 1 {
			t.Errorf("query %s when Serve's context ended: %v, %v; want its answer", name, reply, err)
			continue
		}
		if !closedBy(c.Conn, time.Now().Add(500*time.Millisecond)) {
			t.Errorf("connection with a query %s still open after its answer", name)
		}
	}
	if !closedBy(stalled, stopped.Add(3*time.Second)) {
		t.Error("a connection stalled inside its message was still open 3 s after Serve's context ended")
	}
	select {
	case <-done:
		// The stalled message began 100 ms before the context ended: its
		// 1 s timeout runs out about 900 ms after.
		if took := time.Since(stopped); took < 500*time.Millisecond {
			t.Errorf("Serve returned %v after its context ended, without waiting for the stalled message's 1 s timeout", took)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return 3 s after its context ended")
	}
}
