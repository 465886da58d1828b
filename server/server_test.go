package server

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/zone"
)

// startServer serves snap on 127.0.0.1 on a free port until the test ends.
func startServer(t testing.TB, snap *zone.Snapshot) *Server {
	t.Helper()
	return serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(snap)})
}

// responderOf answers from snap for the fixture's zones.
func responderOf(snap *zone.Snapshot) *answer.Responder {
	return &answer.Responder{
		Snapshot: func() *zone.Snapshot { return snap },
		Zones:    []string{"cluster.local.", "in-addr.arpa.", "ip6.arpa."},
	}
}

// serve binds s and serves until the test ends.
func serve(t testing.TB, s *Server) *Server {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func exchange(t testing.TB, s *Server, m *dns.Msg, network string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	addr := s.UDPAddr().String()
	if network == "tcp" {
		addr = s.TCPAddr().String()
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, m.Question[0].String(), err)
	}
	return r
}

// rawExchange sends m over UDP and returns the reply's bytes.
func rawExchange(t testing.TB, s *Server, m *dns.Msg) []byte {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return rawUDP(t, s, wire, 2*time.Second)
}

// rawUDP sends wire and returns the reply, or nil when none comes within
// wait.
func rawUDP(t testing.TB, s *Server, wire []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := dns.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestTCPPipelining(t *testing.T) {
	s := startServer(t, fixture.Cluster(t))
	co, err := dns.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.SetDeadline(time.Now().Add(5 * time.Second))
	names := []string{"web.awx.svc.cluster.local.", "big.awx.svc.cluster.local.", "nope.awx.svc.cluster.local."}
	var ids []uint16
	for i := range 300 {
		m := fixture.Query(names[i%len(names)], dns.TypeA)
		ids = append(ids, m.Id)
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r.Id != id {
			t.Fatalf("reply %d has ID %d, want %d", i, r.Id, id)
		}
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixture.Cluster(t)), TCPIdleTimeout: 100 * time.Millisecond})
	co, err := dns.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := co.ReadMsg(); err == nil {
		t.Fatal("read a message from a server that was sent none")
	} else if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("the server kept an idle connection open for 5s; want it closed after 100ms")
	}
}

// TestWildcardReplySource binds the wildcard address and asks at
// 127.0.0.2: the reply must come from 127.0.0.2, or a connected client
// (as every stub resolver is) never sees it.
func TestWildcardReplySource(t *testing.T) {
	s := serve(t, &Server{Addr: "0.0.0.0:0", Responder: responderOf(fixture.Cluster(t))})
	port := s.UDPAddr().Port()
	for _, ip := range []string{"127.0.0.2", "127.0.0.1"} {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		r, _, err := c.Exchange(fixture.Query("web.awx.svc.cluster.local.", dns.TypeA), fmt.Sprintf("%s:%d", ip, port))
		if err != nil || len(r.Answer) != 1 {
			t.Errorf("query to %s: %v %v", ip, err, r)
		}
	}
}

// TestTCPSlotsAreNotHeldByIdleClients opens idle connections: one client
// cannot take more than its share, and under pressure idle connections are
// closed within a second, so other clients get answers.
func TestTCPSlotsAreNotHeldByIdleClients(t *testing.T) {
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixture.Cluster(t)),
		MaxTCPConns: 16, MaxTCPConnsPerClient: 12, TCPIdleTimeout: time.Minute})

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 13 {
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// The 13th connection of one client is over its share: closed at once.
	idle[12].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle[12].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a client's 13th connection was kept (read: %v)", err)
	}
	// 12 of 16 slots are taken: idle connections go after about a second.
	start := time.Now()
	idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("an idle connection under pressure was kept for 5s (read: %v)", err)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Errorf("idle connection closed after %v under pressure, want about 1s", waited)
	}
	// Another client is served.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	nc, err := d.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	co := &dns.Conn{Conn: nc}
	defer co.Close()
	co.SetDeadline(time.Now().Add(2 * time.Second))
	if err := co.WriteMsg(fixture.Query("web.awx.svc.cluster.local.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 1 {
		t.Errorf("another client: %v %v", err, r)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestUDPBurst sends bursts of queries from several sockets without
// waiting, so that the server reads and answers them in batches, and
// checks that every socket gets exactly its own replies. Bursts stay
// small enough for the sockets' buffers.
func TestUDPBurst(t *testing.T) {
	s := startServer(t, fixture.Cluster(t))
	const socks, burst, rounds = 4, 16, 8
	var conns []*net.UDPConn
	for range socks {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(s.UDPAddr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	buf := make([]byte, 2048)
	for round := range rounds {
		for i, c := range conns {
			for j := range burst {
				m := fixture.Query("web-headless.awx.svc.cluster.local.", dns.TypeA)
				m.Id = uint16(i<<12 | round<<8 | j)
				wire, _ := m.Pack()
				if _, err := c.Write(wire); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i, c := range conns {
			seen := map[uint16]bool{}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for len(seen) < burst {
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("socket %d, round %d: %d of %d replies: %v", i, round, len(seen), burst, err)
				}
				var m dns.Msg
				if err := m.Unpack(buf[:n]); err != nil {
					t.Fatal(err)
				}
				if int(m.Id>>12) != i || int(m.Id>>8&0xF) != round || seen[m.Id] || len(m.Answer) != 4 {
					t.Fatalf("socket %d, round %d: reply %#x with %d answers", i, round, m.Id, len(m.Answer))
				}
				seen[m.Id] = true
			}
		}
	}
}

// BenchmarkServeUDP measures a whole exchange over loopback UDP with the
// miekg/dns client, for comparison with the socket-free figures.
func BenchmarkServeUDP(b *testing.B) {
	s := startServer(b, fixture.Bench(b, 10000))
	c, err := dns.Dial("udp", s.UDPAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	m := fixture.Query("svc-1.awx.svc.cluster.local.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.WriteMsg(m); err != nil {
			b.Fatal(err)
		}
		if _, err := c.ReadMsg(); err != nil {
			b.Fatal(err)
		}
	}
}
