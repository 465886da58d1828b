package policy

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

func init() {
	Register(simpleBuilder{name: "round-robin", traits: Reorders, build: func() Step { return &roundRobin{} }})
	Register(simpleBuilder{name: "random", traits: Reorders, build: func() Step { return randomStep{} }})
	Register(simpleBuilder{name: "weighted", traits: Reorders, build: func() Step { return weighted{} }})
	Register(simpleBuilder{name: "least-loaded", traits: Reorders | ReadsLoad | NeedsUpkeep, build: func() Step { return new(leastLoaded) }})
	// drain only drops candidates: the terminating ones, or all but them.
	Register(simpleBuilder{name: "drain", traits: WantsTerminating, build: func() Step { return drain{} }})
	Register(firstBuilder{})
	Register(ttlBuilder{})
	Register(stickyBuilder{})
}

// simpleBuilder builds steps that take no arguments.
type simpleBuilder struct {
	name   string
	traits Traits
	build  func() Step
}

func (b simpleBuilder) Name() string   { return b.name }
func (b simpleBuilder) Traits() Traits { return b.traits }
func (b simpleBuilder) Build(args string) (Step, error) {
	if args != "" {
		return nil, fmt.Errorf("takes no arguments, got %q", args)
	}
	return b.build(), nil
}

func (r *Request) rand() *rand.Rand {
	if r.Rand != nil {
		return r.Rand
	}
	return globalRand
}

// globalRand draws from the runtime's per-thread generator: no lock.
var globalRand = rand.New(runtimeSource{})

type runtimeSource struct{}

func (runtimeSource) Uint64() uint64 { return rand.Uint64() }

// roundRobin rotates the candidates by one position per query. Its counter
// lives as long as the Chain, which the Compiler keeps across snapshots.
type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) Pick(req *Request, _ []Endpoint, in, out []int) []int {
	if len(in) == 0 {
		return out
	}
	n := r.next.Load()
	if !req.DryRun {
		n = r.next.Add(1) - 1
	}
	k := int(n % uint64(len(in)))
	out = append(out, in[k:]...)
	return append(out, in[:k]...)
}

// randomStep shuffles the candidates uniformly.
type randomStep struct{}

func (randomStep) Pick(req *Request, _ []Endpoint, in, out []int) []int {
	start := len(out)
	out = append(out, in...)
	s := out[start:]
	req.rand().Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return out
}

// weighted orders candidates at random, each place drawn in proportion to
// the endpoints' static weights (Efraimidis–Spirakis: sort by u^(1/w)).
// Endpoints of weight 0 come last.
type weighted struct{}

func (weighted) Pick(req *Request, cands []Endpoint, in, out []int) []int {
	type keyed struct {
		key float64
		idx int
	}
	var buf [32]keyed
	ks := buf[:0]
	r := req.rand()
	for _, i := range in {
		w := cands[i].weight()
		k := math.Inf(-1)
		if w > 0 {
			k = math.Log(r.Float64()+math.SmallestNonzeroFloat64) / w
		}
		ks = append(ks, keyed{k, i})
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Compare(b.key, a.key) })
	for _, k := range ks {
		out = append(out, k.idx)
	}
	return out
}

func (e *Endpoint) weight() float64 { return float64(max(e.Weight, 0)) }

// leastLoaded puts first the candidate with the lowest BlendedScores (the handout
// ledger blended with fresh live load; ties broken at random), and orders
// the rest by power of two choices: each later place goes to the lower
// score of two candidates drawn at random from those left.
//
// The first place is exact because most clients use only the first
// address: it makes a replica's first places follow its ledger to within
// one handout, which is what is left to balance when a cache shares each
// answer among many clients. Replicas that share a live load view do not
// herd on it: each handout raises the endpoint's handouts-since-the-poll
// term in the replica that made it. Sampling the later places keeps their
// cost linear in the number of candidates.
//
// The step also remembers which endpoint each client holds (see holdings),
// and BlendedScores counts those clients per endpoint.
//
// A second question from a quiet client within repeatTicks of its answer
// gets that answer's first place again, when that endpoint is among the
// candidates, and its handouts are not counted (Request.repeat): it is
// most likely a copy of the first question, sent by a cache for a client
// that asked while the cache's own question was in flight. The cache
// keeps one of the two answers and hands it to all its clients, so
// answering both alike and counting one is what keeps the ledger true;
// two different answers counted would leave one endpoint counted for a
// cache it never got. The same goes for a dual-stack client's A and AAAA
// questions asked together. Later places are drawn again, as for any
// question.
type leastLoaded struct {
	holds holdings
}

func (ll *leastLoaded) Pick(req *Request, cands []Endpoint, in, out []int) []int {
	start := len(out)
	out = append(out, in...)
	left := out[start:]
	if len(left) == 0 {
		return out // nothing to hold: leave the client's hold as it is
	}
	// BlendedScores are read once, at one instant, in the order of left: the
	// first place on scores+clients, later places on scores (scoreParts).
	var buf, cbuf [64]float64
	scores, clients := buf[:0], cbuf[:0]
	if len(left) > len(buf) {
		scores, clients = make([]float64, 0, len(left)), make([]float64, 0, len(left))
	}
	now := nowTicks()
	holds := req.Client.IsValid()
	var own *Ledger
	var shard int
	if holds {
		ll.holds.expireDue(now)
		shard = holdShardOf(req.Client)
		own = ll.holds.current(shard, req.Client, now)
	}
	scores, clients = scoreParts(cands, left, now, wallNow(cands, left), own, scores, clients)
	r := req.rand()
	if len(left) > 1 {
		best, ties := 0, 1
		for k := 1; k < len(left); k++ {
			sk, sb := scores[k]+clients[k], scores[best]+clients[best]
			switch {
			case sk < sb:
				best, ties = k, 1
			case sk == sb:
				ties++
				if r.IntN(ties) == 0 {
					best = k
				}
			}
		}
		left[0], left[best] = left[best], left[0]
		scores[0], scores[best] = scores[best], scores[0]
	}
	if holds && !req.DryRun {
		ttl := time.Duration(max(req.TTL, 1)) * time.Second
		offered := func(l *Ledger) int {
			for k, i := range left {
				if cands[i].Ledger == l {
					return k
				}
			}
			return -1
		}
		// The check for a copy is move's, under its lock: a copy handled
		// at the same instant as the question it copies found no hold
		// above, but finds it there.
		if held, k := ll.holds.move(shard, req.Client, cands[left[0]].Ledger, now, now+uint32(ttl/tick), offered); held != nil {
			left[0], left[k] = left[k], left[0]
			scores[0], scores[k] = scores[k], scores[0]
			req.repeat = held
		}
	}
	left, scores = left[1:], scores[1:]
	for len(left) > 1 {
		a, b := r.IntN(len(left)), r.IntN(len(left)-1)
		if b >= a {
			b++
		}
		if scores[b] < scores[a] {
			a = b
		}
		left[0], left[a] = left[a], left[0]
		scores[0], scores[a] = scores[a], scores[0]
		left, scores = left[1:], scores[1:]
	}
	return out
}

// LedgerValue is the endpoint's handout ledger value now, which
// least-loaded blends with live load (see BlendedScores).
func (e *Endpoint) LedgerValue() float64 { return e.Ledger.Value() }

// wallNow is the time live samples are judged fresh at: time.Now when
// some candidate has a live cell, else the zero time (no clock read).
func wallNow(cands []Endpoint, in []int) time.Time {
	for _, i := range in {
		if cands[i].Live != nil {
			return time.Now()
		}
	}
	return time.Time{}
}

// drain keeps endpoints that are terminating but still serving only when
// no other candidate is left, and then last.
type drain struct{}

func (drain) Pick(_ *Request, cands []Endpoint, in, out []int) []int {
	start := len(out)
	for _, i := range in {
		if !cands[i].Terminating {
			out = append(out, i)
		}
	}
	if len(out) > start {
		return out
	}
	for _, i := range in {
		if cands[i].Serving {
			out = append(out, i)
		}
	}
	return out
}

type firstBuilder struct{}

func (firstBuilder) Name() string   { return "first" }
func (firstBuilder) Traits() Traits { return 0 }
func (firstBuilder) Build(args string) (Step, error) {
	n, err := strconv.Atoi(args)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("want first=N with N ≥ 1, got %q", args)
	}
	return first(n), nil
}

// first keeps the first N candidates (subsetting).
type first int

func (f first) Pick(_ *Request, _ []Endpoint, in, out []int) []int {
	return append(out, in[:min(int(f), len(in))]...)
}

type ttlBuilder struct{}

func (ttlBuilder) Name() string   { return "ttl" }
func (ttlBuilder) Traits() Traits { return 0 }
func (ttlBuilder) Build(args string) (Step, error) {
	d, err := parseSeconds(args)
	if err != nil || d < 1 || d > 86400 {
		return nil, fmt.Errorf("want ttl=S with 1 ≤ S ≤ 86400 seconds, got %q", args)
	}
	return ttlStep(d), nil
}

// ttlStep sets the TTL of the Service's records; it leaves the order alone.
type ttlStep uint32

func (ttlStep) Pick(_ *Request, _ []Endpoint, in, out []int) []int { return append(out, in...) }

// parseSeconds accepts "30" or a Go duration of whole seconds ("30s", "2m").
func parseSeconds(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d%time.Second != 0 || d < 0 {
		return 0, fmt.Errorf("%q is not a whole number of seconds", s)
	}
	return uint32(d / time.Second), nil
}

// DefaultAffinityTimeout is Kubernetes' default sessionAffinity timeout.
const DefaultAffinityTimeout = 10800 * time.Second

// maxStickyClients bounds a sticky step's memory of client assignments.
const maxStickyClients = 65536

type stickyBuilder struct{}

func (stickyBuilder) Name() string   { return "sticky" }
func (stickyBuilder) Traits() Traits { return Reorders | ReadsClient }
func (stickyBuilder) Build(args string) (Step, error) {
	timeout := DefaultAffinityTimeout
	if args != "" {
		s, err := parseSeconds(args)
		if err != nil || s < 1 {
			return nil, fmt.Errorf("want sticky or sticky=S with S ≥ 1 seconds, got %q", args)
		}
		timeout = time.Duration(s) * time.Second
	}
	return newSticky(timeout), nil
}

// sticky puts the client's endpoint first. A client's endpoint is the one
// of highest rendezvous hash (client key, endpoint key), so replicas agree
// without talking and only 1/n of the clients move when an endpoint comes
// or goes; once assigned, a client keeps its endpoint for the timeout since
// its last use (sessionAffinity: ClientIP) while the endpoint stays a
// candidate of the Service.
//
// The assignments live in bounded LRUs sharded by client, each with its own
// lock, so queries of different clients seldom meet on one. (golang-lru's
// expirable cache is not used: each one starts a goroutine that never ends.)
type sticky struct {
	timeout time.Duration
	shards  [stickyShards]*lru.Cache[netip.Addr, assignment]
}

const stickyShards = 16

type assignment struct {
	key     string // the endpoint's Key
	expires time.Time
}

func newSticky(timeout time.Duration) *sticky {
	s := &sticky{timeout: timeout}
	for i := range s.shards {
		c, err := lru.New[netip.Addr, assignment](maxStickyClients / stickyShards)
		if err != nil {
			panic(err) // only for a size ≤ 0
		}
		s.shards[i] = c
	}
	return s
}

func (s *sticky) Pick(req *Request, cands []Endpoint, in, out []int) []int {
	if len(in) == 0 {
		return out
	}
	shard := s.shards[Rendezvous(req.Client, "")%stickyShards]
	now := time.Now()
	chosen := -1
	if a, ok := shard.Get(req.Client); ok && now.Before(a.expires) {
		if pos := slices.IndexFunc(in, func(i int) bool { return cands[i].Key == a.key }); pos >= 0 {
			chosen = pos
			if !req.DryRun {
				// Like kube-proxy, the timeout runs from the last use.
				shard.Add(req.Client, assignment{key: a.key, expires: now.Add(s.timeout)})
			}
		} else if slices.ContainsFunc(cands, func(e Endpoint) bool { return e.Key == a.key }) {
			// The endpoint is still the Service's but not a candidate of
			// this question (an IPv4-only endpoint asked for AAAA): answer
			// without moving the assignment.
			return appendFirst(out, in, rendezvousWinner(req.Client, cands, in))
		}
	}
	if chosen < 0 {
		chosen = rendezvousWinner(req.Client, cands, in)
		if !req.DryRun {
			shard.Add(req.Client, assignment{key: cands[in[chosen]].Key, expires: now.Add(s.timeout)})
		}
	}
	return appendFirst(out, in, chosen)
}

// rendezvousWinner is the position in in of the candidate with the highest
// rendezvous hash for client.
func rendezvousWinner(client netip.Addr, cands []Endpoint, in []int) int {
	winner, best := 0, uint64(0)
	for pos, i := range in {
		if h := Rendezvous(client, cands[i].Key); pos == 0 || h > best {
			winner, best = pos, h
		}
	}
	return winner
}

// appendFirst appends in to out with in[pos] moved to the front.
func appendFirst(out, in []int, pos int) []int {
	out = append(out, in[pos])
	out = append(out, in[:pos]...)
	return append(out, in[pos+1:]...)
}

// Rendezvous is the highest-random-weight hash of a client and an endpoint
// key. It is FNV-1a with a final mix, the same in every process, so that
// replicas agree without talking.
func Rendezvous(client netip.Addr, key string) uint64 {
	var b [16]byte
	a := client.As16()
	copy(b[:], a[:])
	h := fnv64(b[:])
	h = fnv64From(h, []byte(key))
	// A final mix so that nearby inputs spread over the whole range.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

func fnv64(b []byte) uint64 { return fnv64From(14695981039346656037, b) }

func fnv64From(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
