package forward

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/internal/fixture"
)

// fakeUpstream answers on 127.0.0.1 with reply(query, from), recording
// every query's source port.
type fakeUpstream struct {
	conn  *net.UDPConn
	mu    sync.Mutex
	ports []uint16
}

func startFakeUpstream(t *testing.T, reply func(q *dns.Msg) []*dns.Msg) *fakeUpstream {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{conn: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			f.mu.Lock()
			f.ports = append(f.ports, from.Port())
			f.mu.Unlock()
			var q dns.Msg
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			for _, r := range reply(&q) {
				wire, _ := r.Pack()
				c.WriteToUDPAddrPort(wire, from)
			}
		}
	}()
	return f
}

func (f *fakeUpstream) addr() netip.AddrPort { return f.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func answerA(q *dns.Msg, ip string) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + ip)
	r.Answer = []dns.RR{rr}
	return r
}

func TestForwarderIgnoresMismatchedReplies(t *testing.T) {
	up := startFakeUpstream(t, func(q *dns.Msg) []*dns.Msg {
		wrongID := answerA(q, "192.0.2.66")
		wrongID.Id++
		wrongName := answerA(q, "192.0.2.67")
		wrongName.Question[0].Name = "other.example."
		return []*dns.Msg{wrongID, wrongName, answerA(q, "192.0.2.1")}
	})
	f := &Forwarder{Upstreams: []netip.AddrPort{up.addr()}}
	r, err := f.Exchange(context.Background(), fixture.Query("a.example.", dns.TypeA))
	if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("got %v, %v; want the matching reply 192.0.2.1", r, err)
	}
}

func TestForwarderFailsOverAndTimesOut(t *testing.T) {
	var silent atomic.Int32
	dead := startFakeUpstream(t, func(*dns.Msg) []*dns.Msg { silent.Add(1); return nil })
	good := startFakeUpstream(t, func(q *dns.Msg) []*dns.Msg { return []*dns.Msg{answerA(q, "192.0.2.2")} })
	f := &Forwarder{Upstreams: []netip.AddrPort{dead.addr(), good.addr()}, Timeout: 200 * time.Millisecond}
	start := time.Now()
	r, err := f.Exchange(context.Background(), fixture.Query("b.example.", dns.TypeA))
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("failover: %v %v", r, err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("failover took %v, want the dead upstream's 200ms timeout and little more", took)
	}
	// The dead upstream is now tried last: the next query is answered at
	// once, without waiting for it.
	before := silent.Load()
	start = time.Now()
	if _, err := f.Exchange(context.Background(), fixture.Query("c.example.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 150*time.Millisecond || silent.Load() != before {
		t.Errorf("an upstream that just failed was tried first (%v)", took)
	}
	f2 := &Forwarder{Upstreams: []netip.AddrPort{dead.addr()}, Timeout: 100 * time.Millisecond}
	if _, err := f2.Exchange(context.Background(), fixture.Query("d.example.", dns.TypeA)); err == nil || !strings.Contains(err.Error(), "no upstream answered") {
		t.Errorf("all upstreams dead: %v", err)
	}
}

func TestForwarderRandomizesSourcePortsAndIDs(t *testing.T) {
	ids := map[uint16]bool{}
	var mu sync.Mutex
	up := startFakeUpstream(t, func(q *dns.Msg) []*dns.Msg {
		mu.Lock()
		ids[q.Id] = true
		mu.Unlock()
		return []*dns.Msg{answerA(q, "192.0.2.3")}
	})
	f := &Forwarder{Upstreams: []netip.AddrPort{up.addr()}}
	const n = 1000
	for range n {
		q := fixture.Query("e.example.", dns.TypeA)
		q.Id = 7 // the client's ID must not reach the upstream
		if _, err := f.Exchange(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	up.mu.Lock()
	ports := map[uint16]bool{}
	for _, p := range up.ports {
		ports[p] = true
	}
	up.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d queries: %d distinct source ports, %d distinct IDs", n, len(ports), len(ids))
	if len(ports) < n*95/100 {
		t.Errorf("%d distinct source ports over %d queries, want ≥ 95%%", len(ports), n)
	}
	if len(ids) < n*95/100 {
		t.Errorf("%d distinct IDs over %d queries, want ≥ 95%%", len(ids), n)
	}
}

func TestForwardCache(t *testing.T) {
	var asked atomic.Int32
	up := startFakeUpstream(t, func(q *dns.Msg) []*dns.Msg {
		asked.Add(1)
		if q.Question[0].Name == "gone.example." {
			r := new(dns.Msg)
			r.SetRcode(q, dns.RcodeNameError)
			soa, _ := dns.NewRR("example. 3600 IN SOA ns.example. h.example. 1 7200 1800 86400 2")
			r.Ns = []dns.RR{soa}
			return []*dns.Msg{r}
		}
		return []*dns.Msg{answerA(q, "192.0.2.4")}
	})
	f := &Forwarder{Upstreams: []netip.AddrPort{up.addr()}, Cache: NewCache(1000, time.Hour)}
	for range 3 {
		r, err := f.Exchange(context.Background(), fixture.Query("f.example.", dns.TypeA))
		if err != nil || len(r.Answer) != 1 {
			t.Fatal(r, err)
		}
	}
	if asked.Load() != 1 {
		t.Errorf("3 identical questions asked upstream %d times, want 1", asked.Load())
	}
	do := fixture.Query("f.example.", dns.TypeA)
	do.SetEdns0(1232, true)
	f.Exchange(context.Background(), do)
	if asked.Load() != 2 {
		t.Error("the DO bit is not part of the cache key")
	}
	// A negative answer is kept min(SOA TTL, MINIMUM) = 2s.
	f.Exchange(context.Background(), fixture.Query("gone.example.", dns.TypeA))
	f.Exchange(context.Background(), fixture.Query("gone.example.", dns.TypeA))
	if asked.Load() != 3 {
		t.Errorf("NXDOMAIN not cached: asked %d", asked.Load())
	}
	k := cacheKeyOf(fixture.Query("gone.example.", dns.TypeA))
	if _, ok := f.Cache.get(k, time.Now().Add(2500*time.Millisecond)); ok {
		t.Error("NXDOMAIN kept past min(SOA TTL, MINIMUM)")
	}
	k = cacheKeyOf(fixture.Query("f.example.", dns.TypeA))
	if r, ok := f.Cache.get(k, time.Now().Add(30*time.Second)); !ok || r.Answer[0].Header().Ttl > 30 {
		t.Errorf("after 30s the cached TTL is %v, want it lowered by the age", r)
	}
	// --cache-max-ttl caps the TTLs handed out, not only the time kept.
	capped := &Forwarder{Upstreams: []netip.AddrPort{up.addr()}, Cache: NewCache(1000, 10*time.Second)}
	capped.Exchange(context.Background(), fixture.Query("g.example.", dns.TypeA))
	if r, ok := capped.Cache.get(cacheKeyOf(fixture.Query("g.example.", dns.TypeA)), time.Now().Add(2*time.Second)); !ok || r.Answer[0].Header().Ttl > 8 {
		t.Errorf("an answer of TTL 60 kept 10s, 2s later: %v, want TTL ≤ 8", r)
	}
}
