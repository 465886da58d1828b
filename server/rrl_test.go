package server

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/server/rrl"
)

// floodCount is what the sources of a flood sent and got back.
type floodCount struct {
	queries, bytesIn         atomic.Int64
	whole, slipped, bytesOut atomic.Int64
}

// flood sends query from every address of sources to addr every period
// until stop is closed, and counts the replies: whole ones, and slips
// (TC without records).
func flood(t *testing.T, addr netip.AddrPort, sources []netip.Addr, query []byte, period time.Duration, stop <-chan struct{}, c *floodCount) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, src := range sources {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadBuffer(1 << 20)
		wg.Go(func() {
			buf := make([]byte, 65535)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				c.bytesOut.Add(int64(n))
				if buf[2]&0x02 != 0 && buf[7] == 0 {
					c.slipped.Add(1)
				} else {
					c.whole.Add(1)
				}
			}
		})
		wg.Go(func() {
			tick := time.NewTicker(period)
			defer tick.Stop()
			to := net.UDPAddrFromAddrPort(addr)
			for {
				select {
				case <-stop:
					time.Sleep(200 * time.Millisecond) // the last replies
					conn.Close()
					return
				case <-tick.C:
				}
				if _, err := conn.WriteToUDP(query, to); err == nil {
					c.queries.Add(1)
					c.bytesIn.Add(int64(len(query)))
				}
			}
		})
	}
	return &wg
}

// TestRateLimitedFlood: a flood from one /24 (20 loopback addresses, as a
// spoofed-source flood arrives) asking for a 100-endpoint name is cut to
// its rate, with every second limited reply slipped as a question alone,
// while a client of another /24 asking the same name keeps getting whole
// answers; the flood gets fewer bytes back than it sent.
func TestRateLimitedFlood(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics := rrl.NewMetrics(reg)
	limiter, err := rrl.New(rrl.Config{ResponsesPerSecond: 20, Window: 2 * time.Second, Slip: 2, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, &Server{Addr: "127.0.0.1:0", Responder: responderOf(fixture.Cluster(t)), RateLimit: limiter})

	q := fixture.Query("big.awx.svc.cluster.local.", dns.TypeA)
	q.SetEdns0(1232, false)
	query, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	unlimited := len(rawUDP(t, startServer(t, fixture.Cluster(t)), query, 2*time.Second))

	var sources []netip.Addr
	for i := 2; i < 22; i++ {
		sources = append(sources, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	var c floodCount
	stop := make(chan struct{})
	wg := flood(t, s.UDPAddr(), sources, query, 4*time.Millisecond, stop, &c)

	// Another client, of 127.0.1.0/24, asks ten times a second.
	other := &dns.Client{Net: "udp", Timeout: time.Second, UDPSize: 1232,
		Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 1, 1)}}}
	asked, answered := 0, 0
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		asked++
		// The answer is truncated to 73 of the 100 addresses, as without
		// limits; a slip would carry none.
		if r, _, err := other.Exchange(q.Copy(), s.UDPAddr().String()); err == nil && len(r.Answer) > 0 {
			answered++
		}
	}
	close(stop)
	wg.Wait()

	nLimited, nSlipped := int64(counter(t, reg, "hdns_dns_rrl_limited_total")), int64(counter(t, reg, "hdns_dns_rrl_slipped_total"))
	factor := float64(c.bytesOut.Load()) / float64(c.bytesIn.Load())
	t.Logf("flood: %d queries of %d bytes from %d addresses of 127.0.0.0/24 in 2 s; %d replies whole (%d bytes each unlimited), %d slipped (%d limited by the server, %d slipped), the rest dropped",
		c.queries.Load(), len(query), len(sources), c.whole.Load(), unlimited, c.slipped.Load(), nLimited, nSlipped)
	slip := float64(c.bytesOut.Load()-c.whole.Load()*int64(unlimited)) / float64(max(c.slipped.Load(), 1))
	t.Logf("flood: %d bytes in, %d bytes out: amplification %.2f (a slip alone %.2f, unlimited %.1f); other client: %d of %d answered",
		c.bytesIn.Load(), c.bytesOut.Load(), factor, slip/float64(len(query)), float64(unlimited)/float64(len(query)), answered, asked)
	if answered < asked-1 {
		t.Errorf("the other client got %d of %d answers", answered, asked)
	}
	if c.whole.Load() > 20*4 || nLimited < c.queries.Load()/2 {
		t.Errorf("the flood was not limited: %d whole replies, %d limited of %d", c.whole.Load(), nLimited, c.queries.Load())
	}
	if c.slipped.Load() == 0 || factor > 1.5 {
		t.Errorf("amplification %.2f with %d slips; want at most 1.5", factor, c.slipped.Load())
	}
}

// counter is the value of the counter name gathered from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
