// Package forward resolves the questions hdns is not authoritative for at
// upstream resolvers, for pods that use hdns as their only nameserver: the
// Forwarder with its answer cache, and the reply a client gets from what
// an upstream said.
//
// It knows nothing of hdns's zones or policies: it must not import zone,
// policy, or the answering and socket packages of the server.
package forward

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/wire"
)

// Forwarder sends questions outside hdns's zones to upstream resolvers,
// for pods that use hdns as their only nameserver. The zero value of each
// optional field is its documented default.
//
// Every exchange uses a fresh random ID and a fresh socket (so a fresh
// source port); a reply whose ID, question or source does not match is
// ignored and the Forwarder keeps waiting for the real one until the
// upstream's timeout. A truncated UDP reply is retried over TCP.
// Upstreams are tried in order, skipping those that failed recently while
// a healthy one is left.
type Forwarder struct {
	// Upstreams are the resolvers' addresses, tried in this order.
	Upstreams []netip.AddrPort
	// Timeout bounds one exchange with one upstream; 0 means 2s.
	Timeout time.Duration
	// Cache, when set, keeps answers for their TTL.
	Cache *Cache
	// Metrics, when set, counts upstream exchanges and cache use.
	Metrics *Metrics

	initOnce sync.Once
	health   []upstreamHealth // parallel to Upstreams; built on first use
}

// upstreamHealth remembers when an upstream last failed.
type upstreamHealth struct {
	failedUntil atomic.Int64 // unix nanoseconds; 0 when healthy
}

// unhealthyFor is how long an upstream that failed is tried last.
const unhealthyFor = 5 * time.Second

// errNoUpstream says every upstream failed.
var errNoUpstream = errors.New("forward: no upstream answered")

func (f *Forwarder) timeout() time.Duration {
	if f.Timeout <= 0 {
		return 2 * time.Second
	}
	return f.Timeout
}

// Exchange resolves q upstream (or from the cache) and returns the
// upstream's reply; the caller sets its own ID and flags.
func (f *Forwarder) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	if len(q.Question) != 1 {
		return nil, errors.New("forward: a query has one question")
	}
	key := cacheKeyOf(q)
	if f.Cache != nil {
		if r, ok := f.Cache.get(key, time.Now()); ok {
			f.Metrics.cacheHit()
			return r, nil
		}
		f.Metrics.cacheMiss()
	}
	f.initOnce.Do(func() { f.health = make([]upstreamHealth, len(f.Upstreams)) })
	var errs []error
	for _, i := range f.order() {
		up := f.Upstreams[i]
		r, err := f.exchangeOne(ctx, up, q)
		if err == nil {
			f.health[i].failedUntil.Store(0)
			f.Metrics.upstream(up, "ok")
			if f.Cache != nil {
				f.Cache.put(key, r, time.Now())
			}
			return r, nil
		}
		f.health[i].failedUntil.Store(time.Now().Add(unhealthyFor).UnixNano())
		f.Metrics.upstream(up, "error")
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", errNoUpstream, errors.Join(errs...))
}

// order lists upstream indexes: healthy ones first, in configured order.
func (f *Forwarder) order() []int {
	now := time.Now().UnixNano()
	idx := make([]int, 0, len(f.Upstreams))
	var later []int
	for i := range f.Upstreams {
		if f.health[i].failedUntil.Load() > now {
			later = append(later, i)
		} else {
			idx = append(idx, i)
		}
	}
	return append(idx, later...)
}

// exchangeOne asks one upstream over UDP, then over TCP if truncated.
func (f *Forwarder) exchangeOne(ctx context.Context, up netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	out := q.Copy()
	out.Id = uint16(rand.Uint32())
	out.RecursionDesired = true
	r, err := exchangeUDP(ctx, up, out)
	if err != nil {
		return nil, err
	}
	if r.Truncated {
		return exchangeTCP(ctx, up, out)
	}
	return r, nil
}

// matches reports whether r answers q: same ID and the same question,
// compared without case (resolvers may echo 0x20 case as they got it).
func matches(q, r *dns.Msg) bool {
	if !r.Response || r.Id != q.Id || len(r.Question) != 1 {
		return false
	}
	a, b := q.Question[0], r.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && wire.Lower(a.Name) == wire.Lower(b.Name)
}

func exchangeUDP(ctx context.Context, up netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
	wire, err := q.Pack()
	if err != nil {
		return nil, err
	}
	// A fresh socket per exchange: the kernel picks a random source port.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := c.Write(wire); err != nil {
		return nil, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	for {
		// A connected socket only delivers datagrams from the upstream's
		// address and port; anything that does not answer q is ignored.
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		var r dns.Msg
		if r.Unpack(buf[:n]) == nil && matches(q, &r) {
			return &r, nil
		}
	}
}

func exchangeTCP(ctx context.Context, up netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", up.String())
	if err != nil {
		return nil, err
	}
	c := &dns.Conn{Conn: nc}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if err := c.WriteMsg(q); err != nil {
		return nil, err
	}
	for {
		r, err := c.ReadMsg()
		if err != nil {
			return nil, err
		}
		if matches(q, r) {
			return r, nil
		}
	}
}
