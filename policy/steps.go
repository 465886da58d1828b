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
	Register(simpleBuilder{name: "weighted", traits: Reorders, build: func() Step { return new(weighted) }})
	Register(leastLoadedBuilder{})
	// drain only drops candidates: the terminating ones, or all but them.
	Register(simpleBuilder{name: "drain", traits: WantsTerminating, build: func() Step { return new(drain) }})
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
	end := k + req.places(len(in))
	if end <= len(in) {
		return append(out, in[k:end]...)
	}
	out = append(out, in[k:]...)
	return append(out, in[:end-len(in)]...)
}

// randomStep shuffles the candidates uniformly. When a few places of many
// are wanted, it draws just those: each place uniformly among the
// candidates not drawn yet, as the head of a shuffle would have it.
type randomStep struct{}

func (randomStep) Pick(req *Request, _ []Endpoint, in, out []int) []int {
	start := len(out)
	r := req.rand()
	if m := req.places(len(in)); m <= maxDrawnPlaces && 2*m <= len(in) {
		return appendDistinct(out, in, m, r)
	}
	out = append(out, in...)
	s := out[start:]
	r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return out
}

// maxDrawnPlaces bounds the places a step draws one by one, rejecting
// repeats, instead of ordering all its candidates.
const maxDrawnPlaces = 16

// appendDistinct appends m distinct entries of in, each drawn uniformly
// among those not drawn yet. With 2m ≤ len(in), a draw is a repeat at
// most half the time.
func appendDistinct(out, in []int, m int, r *rand.Rand) []int {
	start := len(out)
	for len(out)-start < m {
		i := in[r.IntN(len(in))]
		if !slices.Contains(out[start:], i) {
			out = append(out, i)
		}
	}
	return out
}

// weighted orders candidates at random, each place drawn in proportion to
// the endpoints' static weights (Efraimidis–Spirakis: sort by u^(1/w)).
// Endpoints of weight 0 come last.
//
// When a few places of many are wanted, it draws just those, each in
// proportion to weight among the candidates not drawn yet, which is the
// same distribution: by rejection, a uniform draw kept with probability
// weight/bound, where bound is the largest weight among the candidates it
// last ordered whole. A draw heavier than the bound (the weights changed)
// or too many rejected draws (weights far apart, or all 0) order them
// whole instead, which renews the bound.
type weighted struct {
	bound atomic.Uint32 // float32 bits; 0: no bound yet
}

func (w *weighted) Pick(req *Request, cands []Endpoint, in, out []int) []int {
	r := req.rand()
	if m := req.places(len(in)); m <= maxDrawnPlaces && 2*m <= len(in) {
		if drawn, ok := w.draw(r, cands, in, out, m); ok {
			return drawn
		}
	}
	type keyed struct {
		key float64
		idx int
	}
	var buf [32]keyed
	ks := buf[:0]
	var heaviest float32
	for _, i := range in {
		wt := cands[i].weight()
		heaviest = max(heaviest, float32(wt))
		k := math.Inf(-1)
		if wt > 0 {
			k = math.Log(r.Float64()+math.SmallestNonzeroFloat64) / wt
		}
		ks = append(ks, keyed{k, i})
	}
	if !req.DryRun {
		w.bound.Store(math.Float32bits(heaviest))
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Compare(b.key, a.key) })
	for _, k := range ks {
		out = append(out, k.idx)
	}
	return out
}

// maxWeightedTries bounds the draws per place of weighted's rejection
// sampling: a draw is kept with probability mean/bound of the weights, so
// weights up to ~30 times their mean still draw their places.
const maxWeightedTries = 128

// draw appends m places drawn by rejection (see weighted), or reports
// that they must be ordered whole.
func (w *weighted) draw(r *rand.Rand, cands []Endpoint, in, out []int, m int) ([]int, bool) {
	bound := float64(math.Float32frombits(w.bound.Load()))
	if bound <= 0 {
		return out, false
	}
	start := len(out)
	for tries := 0; len(out)-start < m; tries++ {
		if tries == maxWeightedTries*m {
			return out[:start], false
		}
		i := in[r.IntN(len(in))]
		wt := cands[i].weight()
		if wt > bound {
			return out[:start], false
		}
		if r.Float64()*bound < wt && !slices.Contains(out[start:], i) {
			out = append(out, i)
		}
	}
	return out, true
}

func (e *Endpoint) weight() float64 { return float64(max(e.Weight, 0)) }

// drain keeps endpoints that are terminating but still serving only when
// no other candidate is left, and then last. It reads its candidates only
// as far as its wanted places, and remembers the last few candidate lists
// of snapshots it found nothing to drop from (passes), so that a chain
// hands those on to its next step without copying them.
type drain struct {
	memos [drainMemos]atomic.Pointer[drainMemo]
	next  atomic.Uint32
}

// drainMemos is how many candidate lists drain remembers: a Service's A,
// AAAA and SRV lists, and the next snapshot's.
const drainMemos = 4

// drainMemo is what drain found in one candidate list. It holds the list
// and its candidates, so that their arrays are not reused for others
// while it is remembered.
type drainMemo struct {
	in          []int
	cands       []Endpoint
	terminating bool
}

func (d *drain) passes(cands []Endpoint, in []int) bool {
	if len(in) == 0 {
		return false
	}
	for k := range d.memos {
		if m := d.memos[k].Load(); m != nil && &m.in[0] == &in[0] && len(m.in) == len(in) && &m.cands[0] == &cands[0] {
			return !m.terminating
		}
	}
	m := &drainMemo{in: in, cands: cands, terminating: slices.ContainsFunc(in, func(i int) bool { return cands[i].Terminating })}
	d.memos[d.next.Add(1)%drainMemos].Store(m)
	return !m.terminating
}

func (*drain) Pick(req *Request, cands []Endpoint, in, out []int) []int {
	start := len(out)
	m := req.places(len(in))
	for _, i := range in {
		if !cands[i].Terminating {
			if out = append(out, i); len(out)-start == m {
				return out
			}
		}
	}
	if len(out) > start {
		return out
	}
	for _, i := range in {
		if cands[i].Serving {
			if out = append(out, i); len(out)-start == m {
				return out
			}
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

func (f first) prefix(want int) int {
	if want > 0 {
		return min(int(f), want)
	}
	return int(f)
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

func (ttlStep) Pick(req *Request, _ []Endpoint, in, out []int) []int {
	return append(out, in[:req.places(len(in))]...)
}

func (ttlStep) prefix(want int) int { return want }

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
	// at is where the endpoint was among the candidates when last
	// found: the same question finds it there again at once.
	at int
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
	m := req.places(len(in))
	if a, ok := shard.Get(req.Client); ok && now.Before(a.expires) {
		if pos := positionOf(cands, in, a.key, a.at); pos >= 0 {
			chosen = pos
			if !req.DryRun {
				// Like kube-proxy, the timeout runs from the last use.
				shard.Add(req.Client, assignment{key: a.key, expires: now.Add(s.timeout), at: pos})
			}
		} else if slices.ContainsFunc(cands, func(e Endpoint) bool { return e.Key == a.key }) {
			// The endpoint is still the Service's but not a candidate of
			// this question (an IPv4-only endpoint asked for AAAA): answer
			// without moving the assignment.
			return appendFirst(out, in, rendezvousWinner(req.Client, cands, in), m)
		}
	}
	if chosen < 0 {
		chosen = rendezvousWinner(req.Client, cands, in)
		if !req.DryRun {
			shard.Add(req.Client, assignment{key: cands[in[chosen]].Key, expires: now.Add(s.timeout), at: chosen})
		}
	}
	return appendFirst(out, in, chosen, m)
}

// positionOf is the position in in of the candidate whose Key is key, or
// -1; at is where to look first.
func positionOf(cands []Endpoint, in []int, key string, at int) int {
	if at < len(in) && cands[in[at]].Key == key {
		return at
	}
	return slices.IndexFunc(in, func(i int) bool { return cands[i].Key == key })
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

// appendFirst appends the first m entries of in, with in[pos] moved to
// the front, to out.
func appendFirst(out, in []int, pos, m int) []int {
	out = append(out, in[pos])
	before := min(pos, m-1)
	out = append(out, in[:before]...)
	return append(out, in[pos+1:pos+1+min(len(in)-pos-1, m-1-before)]...)
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
