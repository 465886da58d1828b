package policy

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// holdings is a least-loaded step's memory of who uses which endpoint now:
// for each client, the endpoint its latest answer put first and until when
// that answer may be used (its TTL). Each endpoint's ledger entry counts
// the clients holding it (Ledger.Clients), which BlendedScores reads without a
// lock.
//
// A client's next question ends its hold, unless move takes it for a copy
// of the question that began the hold: it asks again because its answer
// expired, or, for clients that resolve before each request or connection
// (Go's resolver, glibc without nscd), because its previous one is done.
// For such clients the count is their in-flight work as of this instant,
// which the handouts do not tell and a polled live value only knows a
// scrape and a poll later.
//
// Clients are identified as Request.Client says (the EDNS Client Subnet
// address, else the source address): the pods asking hdns directly, or
// through a forwarder that adds their subnet. Many clients behind one
// address count as one.
//
// The holds live in bounded LRUs sharded by client, each with its own lock
// (like sticky's assignments). Expired holds are dropped from the oldest
// end of every shard by the first question of each ledger tick
// (expireDue), and at each snapshot build (Compiler.Sweep): a count is at
// most a tick stale while its Service gets questions, and not past the
// next build when it gets none. Counts that lagged further would steer
// answers away from endpoints no client holds any more: behind a cache
// whose clients take turns asking, the hold of the client that asked last
// time expires with the cache's answer, and nothing else of that client's
// moves its shard.
type holdings struct {
	shards [holdShards]holdShard
	swept  atomic.Uint32 // the ledger tick of the last expireDue sweep
}

const (
	holdShards = 16
	// maxHolders bounds a Service's remembered clients; past it the least
	// recently seen client's hold is dropped.
	maxHolders = 65536
)

// maxHoldsTotal bounds the clients remembered by all Services together
// (≈ 190 B each): any client can name any address in an ECS option, and
// one per-Service bound times many Services is no bound. Past it, clients
// not remembered yet are not; the others keep moving. A variable for
// tests.
var maxHoldsTotal int64 = 1 << 18

// holdsTotal counts the holds of every holdings in the process;
// holdsRefused the clients not remembered because of maxHoldsTotal;
// holdsRepeated the questions move took for copies.
var holdsTotal, holdsRefused, holdsRepeated atomic.Int64

type holdShard struct {
	mu     sync.Mutex
	holds  *simplelru.LRU[netip.Addr, hold] // nil until the shard's first hold
	closed bool                             // the step's chain was dropped: hold nothing more
}

type hold struct {
	ledger *Ledger
	start  uint32 // ledger ticks: the answer that began the hold
	until  uint32 // ledger ticks
	// fresh is set when the hold began with a question from a quiet
	// client (see move) and no second question has repeated it yet.
	fresh bool
}

// repeatTicks is how soon after a quiet client's answer a second question
// of the same client is taken for a copy of the first (10–20 ms at the
// ledger's resolution): a cache forwards each client that asks while its
// own question for the expired answer is in flight (CoreDNS's cache does),
// and those copies come within its round trip to hdns.
const repeatTicks = 2

// holdShardOf is the shard of client's hold. A query computes it once for
// its current and its move.
func holdShardOf(client netip.Addr) int { return int(Rendezvous(client, "") % holdShards) }

// current returns the ledger entry of the endpoint client holds at now
// (ledger ticks), or nil when it holds none; shard is holdShardOf(client).
func (h *holdings) current(shard int, client netip.Addr, now uint32) *Ledger {
	s := &h.shards[shard]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holds == nil {
		return nil
	}
	if hd, ok := s.holds.Peek(client); ok && before(now, hd.until) {
		return hd.ledger
	}
	return nil
}

// move ends client's hold, if any, and, when to is not nil, starts one on
// to until until (ledger ticks, like now); it also drops the expired holds
// at the oldest end of the client's shard and of the next one; shard is
// holdShardOf(client).
//
// The new hold is fresh when the client was quiet: it held nothing, or
// its hold was past half its time. A cache asks once per TTL, so each of
// its questions is quiet; a client that asks before every connection is
// quiet only when it connects less often than every half TTL.
//
// Unless the question is a copy: the client's hold is fresh, began less
// than repeatTicks before now, and offered finds its endpoint among this
// question's candidates (at index k, ≥ 0). Then move keeps that hold,
// marks it repeated (a hold has at most one copy: many questions at once
// from one new address are more likely many clients than one cache's
// copies), and returns its endpoint and k instead of moving to to.
func (h *holdings) move(shard int, client netip.Addr, to *Ledger, now, until uint32, offered func(*Ledger) int) (copyOf *Ledger, k int) {
	s := &h.shards[shard]
	s.mu.Lock()
	if !s.closed {
		if s.holds == nil {
			s.holds = newHolds()
		}
		s.expire(now)
		old, ok := s.holds.Peek(client)
		// Signed differences: now was read before the lock, so a hold
		// begun by a question handled at the same instant may start a
		// tick after it.
		if ok && old.fresh && int32(now-old.start) < repeatTicks && offered != nil {
			if k = offered(old.ledger); k >= 0 {
				// Add makes it the newest hold; holds begun since end at
				// most repeatTicks after it, so expire drops it that late.
				old.fresh = false
				s.holds.Add(client, old)
				holdsRepeated.Add(1)
				s.mu.Unlock()
				return old.ledger, k
			}
		}
		next := hold{ledger: to, start: now, until: until, fresh: !ok || int32(now-old.start) >= int32(old.until-old.start)/2}
		switch {
		case to == nil:
			s.holds.Remove(client) // the eviction callback counts it out
		case ok:
			// Replacing a value does not call the eviction callback.
			old.ledger.held.Add(-1)
			to.held.Add(1)
			s.holds.Add(client, next)
		case holdsTotal.Load() < maxHoldsTotal:
			holdsTotal.Add(1)
			to.held.Add(1)
			s.holds.Add(client, next)
		default:
			holdsRefused.Add(1)
		}
	}
	s.mu.Unlock()
	next := &h.shards[(shard+1)%holdShards]
	if next.mu.TryLock() {
		if next.holds != nil {
			next.expire(now)
		}
		next.mu.Unlock()
	}
	return nil, -1
}

// expire drops the holds that ended by now from the oldest end. Holds are
// in last-use order, which is also their expiry order while the Service's
// TTL stays the same. Called with s.mu held.
func (s *holdShard) expire(now uint32) {
	for {
		_, hd, ok := s.holds.GetOldest()
		if !ok || before(now, hd.until) {
			return
		}
		s.holds.RemoveOldest()
	}
}

// expireDue drops the holds that ended by now from every shard, once per
// ledger tick: the first question of a tick pays for one pass, the others
// for an atomic load. A shard that another question has locked is skipped;
// that question's move expires it.
func (h *holdings) expireDue(now uint32) {
	last := h.swept.Load()
	if last == now || !h.swept.CompareAndSwap(last, now) {
		return
	}
	for i := range h.shards {
		s := &h.shards[i]
		if s.mu.TryLock() {
			if s.holds != nil {
				s.expire(now)
			}
			s.mu.Unlock()
		}
	}
}

// expireAll drops the holds that ended by now from every shard, so that
// a Service that gets no more questions does not keep its clients counted
// against maxHoldsTotal. The Compiler calls it at each snapshot build.
func (h *holdings) expireAll(now uint32) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		if s.holds != nil {
			s.expire(now)
		}
		s.mu.Unlock()
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

// before reports whether ledger time a is before b, across the uint32
// clock's wrap (497 days).
func before(a, b uint32) bool { return int32(a-b) < 0 }

func newHolds() *simplelru.LRU[netip.Addr, hold] {
	l, err := simplelru.NewLRU(maxHolders/holdShards, func(_ netip.Addr, hd hold) {
		hd.ledger.held.Add(-1)
		holdsTotal.Add(-1)
	})
	if err != nil {
		panic(err) // only for a size ≤ 0
	}
	return l
}
