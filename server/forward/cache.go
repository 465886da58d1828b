package forward

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hdns-dev/hdns/server/wire"
)

// Cache keeps forwarded answers for their TTL, bounded in entries. It is
// sharded by key so that concurrent queries seldom share a lock.
type Cache struct {
	maxTTL uint32
	shards [cacheShards]*lru.Cache[cacheKey, cacheEntry]
}

const cacheShards = 16

// cacheKey is what makes two questions the same answer: name (lower case),
// type, class, and the DO and CD bits.
type cacheKey struct {
	name          string
	qtype, qclass uint16
	do, cd        bool
}

type cacheEntry struct {
	msg     *dns.Msg // never modified after put
	stored  time.Time
	expires time.Time
}

// NewCache returns a Cache of at most size entries whose answers are kept
// at most maxTTL.
func NewCache(size int, maxTTL time.Duration) *Cache {
	c := &Cache{maxTTL: uint32(maxTTL / time.Second)}
	for i := range c.shards {
		s, err := lru.New[cacheKey, cacheEntry](max(1, size/cacheShards))
		if err != nil {
			panic(err) // size ≥ 1 by construction
		}
		c.shards[i] = s
	}
	return c
}

func cacheKeyOf(q *dns.Msg) cacheKey {
	k := cacheKey{name: wire.Lower(q.Question[0].Name), qtype: q.Question[0].Qtype, qclass: q.Question[0].Qclass, cd: q.CheckingDisabled}
	if o := q.IsEdns0(); o != nil {
		k.do = o.Do()
	}
	return k
}

func (c *Cache) shard(k cacheKey) *lru.Cache[cacheKey, cacheEntry] {
	h := fnv32(k.name) ^ uint32(k.qtype)<<3
	return c.shards[h%cacheShards]
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// get returns a copy of the cached answer with TTLs lowered by its age and
// capped at its remaining time in the cache, so that caches behind hdns
// keep it no longer than hdns does.
func (c *Cache) get(k cacheKey, now time.Time) (*dns.Msg, bool) {
	e, ok := c.shard(k).Get(k)
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	age := uint32(now.Sub(e.stored) / time.Second)
	remaining := uint32((e.expires.Sub(now) + time.Second - 1) / time.Second)
	r := e.msg.Copy()
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl = min(h.Ttl-min(h.Ttl, age), remaining)
			}
		}
	}
	return r, true
}

// put stores r for its TTL: the smallest TTL of its answer, or for a
// negative answer min(SOA TTL, SOA MINIMUM) (RFC 2308), at most maxTTL.
// Answers with other rcodes, and those without a TTL to go by, are not
// stored.
func (c *Cache) put(k cacheKey, r *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(r)
	if !ok || ttl == 0 {
		return
	}
	ttl = min(ttl, c.maxTTL)
	c.shard(k).Add(k, cacheEntry{msg: r.Copy(), stored: now, expires: now.Add(time.Duration(ttl) * time.Second)})
}

func cacheTTL(r *dns.Msg) (uint32, bool) {
	if r.Truncated || (r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError) {
		return 0, false
	}
	if r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
		ttl := r.Answer[0].Header().Ttl
		for _, rr := range r.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
		return ttl, true
	}
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl), true
		}
	}
	return 0, false
}

// Metrics count the forwarder's work. A nil *Metrics counts nothing.
type Metrics struct {
	upstreams  *prometheus.CounterVec
	hits, miss prometheus.Counter
}

// NewMetrics creates the forwarder's metrics and registers them.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		upstreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hdns_forward_requests_total",
			Help: "Exchanges with upstream resolvers, by upstream and result (ok, error).",
		}, []string{"upstream", "result"}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{Name: "hdns_forward_cache_hits_total", Help: "Forwarded questions answered from the cache."}),
		miss: prometheus.NewCounter(prometheus.CounterOpts{Name: "hdns_forward_cache_misses_total", Help: "Forwarded questions not in the cache."}),
	}
	reg.MustRegister(m.upstreams, m.hits, m.miss)
	return m
}

func (m *Metrics) upstream(up interface{ String() string }, result string) {
	if m != nil {
		m.upstreams.WithLabelValues(up.String(), result).Inc()
	}
}

func (m *Metrics) cacheHit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *Metrics) cacheMiss() {
	if m != nil {
		m.miss.Inc()
	}
}
