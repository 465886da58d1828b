package policy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// holdings is a least-loaded step's memory of who uses which endpoint now:
// for each client, the endpoint its latest answer put first and until when
// that answer may be used (its TTL). Each endpoint's Live cell counts the
// clients holding it (Live.Clients), which Scores reads without a lock.
//
// A client's next question ends its hold: it asks again because its answer
// expired, or, for clients that resolve before each request or connection
// (Go's resolver, glibc without nscd), because its previous one is done.
// For such clients the count is their in-flight work as of this instant,
// which a polled live value only knows a scrape and a poll later.
//
// Clients are identified as Request.Client says (the EDNS Client Subnet
// address, else the source address): the pods asking hdns directly, or
// through a forwarder that adds their subnet. Many clients behind one
// address count as one.
//
// The holds live in bounded LRUs sharded by client, each with its own lock
// (like sticky's assignments); an expired hold is dropped from the oldest
// end of its shard by the next move into that shard or the one before it,
// so a count is stale only while its Service gets no questions.
type holdings struct {
	shards [holdShards]holdShard
}

const (
	holdShards = 16
	// maxHolders bounds a Service's remembered clients; past it the least
	// recently seen client's hold is dropped.
	maxHolders = 65536
)

type holdShard struct {
	mu     sync.Mutex
	holds  *simplelru.LRU[netip.Addr, hold] // nil until the shard's first hold
	closed bool                             // the step's chain was dropped: hold nothing more
}

type hold struct {
	live  *Live
	until time.Time
}

func (h *holdings) shard(client netip.Addr) *holdShard {
	return &h.shards[Rendezvous(client, "")%holdShards]
}

// current returns the Live cell of the endpoint client holds at now, or
// nil when it holds none.
func (h *holdings) current(client netip.Addr, now time.Time) *Live {
	s := h.shard(client)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holds == nil {
		return nil
	}
	if hd, ok := s.holds.Peek(client); ok && now.Before(hd.until) {
		return hd.live
	}
	return nil
}

// move ends client's hold, if any, and, when to is not nil, starts one on
// to until until; it also drops the expired holds at the oldest end of
// the client's shard and of the next one.
func (h *holdings) move(client netip.Addr, to *Live, now, until time.Time) {
	i := Rendezvous(client, "") % holdShards
	s := &h.shards[i]
	s.mu.Lock()
	if !s.closed {
		if s.holds == nil {
			s.holds = newHolds()
		}
		s.expire(now)
		switch old, ok := s.holds.Peek(client); {
		case to == nil:
			s.holds.Remove(client) // the eviction callback counts it out
		case ok:
			// Replacing a value does not call the eviction callback.
			old.live.held.Add(-1)
			fallthrough
		default:
			to.held.Add(1)
			s.holds.Add(client, hold{live: to, until: until})
		}
	}
	s.mu.Unlock()
	next := &h.shards[(i+1)%holdShards]
	if next.mu.TryLock() {
		if next.holds != nil {
			next.expire(now)
		}
		next.mu.Unlock()
	}
}

// expire drops the holds that ended by now from the oldest end. Holds are
// in last-use order, which is also their expiry order while the Service's
// TTL stays the same. Called with s.mu held.
func (s *holdShard) expire(now time.Time) {
	for {
		_, hd, ok := s.holds.GetOldest()
		if !ok || now.Before(hd.until) {
			return
		}
		s.holds.RemoveOldest()
	}
}

// close drops every hold and refuses new ones: the chain is no longer
// any Service's, and its clients must stop counting.
func (h *holdings) close() {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		if s.holds != nil {
			s.holds.Purge()
		}
		s.closed = true
		s.mu.Unlock()
	}
}

func newHolds() *simplelru.LRU[netip.Addr, hold] {
	l, err := simplelru.NewLRU(maxHolders/holdShards, func(_ netip.Addr, hd hold) { hd.live.held.Add(-1) })
	if err != nil {
		panic(err) // only for a size ≤ 0
	}
	return l
}
