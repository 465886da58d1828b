package policy

import (
	"math"
	"sync/atomic"
	"time"
)

// ledgerTimeConstant is how fast handouts are forgotten: a handout's weight
// falls to 1/e after this long.
const ledgerTimeConstant = 30 * time.Second

// tick is the resolution of a Ledger's timestamp.
const tick = 10 * time.Millisecond

// ledgerEpoch is the origin of Ledger timestamps; uint32 ticks of 10ms last
// 497 days from it.
var ledgerEpoch = time.Now()

func nowTicks() uint32 { return uint32(time.Since(ledgerEpoch) / tick) }

// NowTicks is the ledger's clock now, for BlendedScores.
func NowTicks() uint32 { return nowTicks() }

// Ledger is one endpoint's exponentially decayed count of handouts. The zero
// value is an empty count. It is safe for concurrent use without locks: the
// value and the time it was last decayed to share one atomic word.
type Ledger struct {
	bits atomic.Uint64 // float32 value << 32 | uint32 ticks
	// held counts the clients whose latest answer put the endpoint first
	// and is not yet expired (see holdings); the least-loaded steps of
	// every Service the endpoint is in write it.
	held atomic.Int32
	// gen is the last Compiler generation that asked for the entry
	// (Compiler.Ledger or Bind); only the Compiler uses it, under its lock. It
	// lives here, not in the Compiler's map, to save an allocation per
	// endpoint.
	gen uint32
}

// Clients is how many clients hold the endpoint now: their latest answer
// from a least-loaded Service put it first and has not expired. A nil
// Ledger has none.
func (l *Ledger) Clients() int {
	if l == nil {
		return 0
	}
	return int(l.held.Load())
}

func decay(v float32, from, to uint32) float32 {
	if to <= from || v == 0 {
		return v
	}
	dt := float64(to-from) * float64(tick) / float64(ledgerTimeConstant)
	return float32(float64(v) * math.Exp(-dt))
}

// Add counts a handout of weight w now. Adding to a nil Ledger does nothing.
func (l *Ledger) Add(w float32) {
	if l == nil {
		return
	}
	l.addAt(w, nowTicks())
}

// addAt is Add at ledger time now, for callers that count several
// handouts at one instant and read the clock once.
func (l *Ledger) addAt(w float32, now uint32) {
	for {
		old := l.bits.Load()
		v := decay(math.Float32frombits(uint32(old>>32)), uint32(old), now)
		next := uint64(math.Float32bits(v+w))<<32 | uint64(now)
		if l.bits.CompareAndSwap(old, next) {
			return
		}
	}
}

// Value is the decayed count now. A nil Ledger is empty.
func (l *Ledger) Value() float64 { return l.valueAt(nowTicks()) }

func (l *Ledger) valueAt(now uint32) float64 {
	if l == nil {
		return 0
	}
	old := l.bits.Load()
	return float64(decay(math.Float32frombits(uint32(old>>32)), uint32(old), now))
}

// handoutWeight is the weight of a handout at position pos of an answer
// held ttl seconds: most clients take the first address, so each later
// position counts half the one before; an answer cached 30s reaches 30×
// the clients of one cached 1s.
func handoutWeight(pos int, ttl uint32) float32 {
	return float32(ttl) / float32(uint32(1)<<min(pos, 31))
}

// recordedPositions bounds the handouts recorded per answer: past it the
// weights are negligible.
const recordedPositions = 8

// seedNew gives each candidate whose ledger entry has never counted a
// handout the mean of the other candidates' entries, so that a Pod joining
// a Service starts level with its peers. Left at 0, least-loaded would
// send it every answer it is drawn into until its count caught up with
// theirs, which their decay makes a moving target: the balance benchmark
// saw a new Pod still at 1.7 times its share 15 s after a scale-up.
// Entries that already counted something are left alone, so seeding
// happens once per entry; with no counted peer there is nothing to seed.
// Bind calls it for each Service's endpoints.
func seedNew(cands []Endpoint) {
	var sum float64
	counted, fresh := 0, 0
	now := nowTicks()
	for i := range cands {
		if cands[i].Ledger.fresh() {
			fresh++
			continue
		}
		sum += cands[i].Ledger.valueAt(now)
		counted++
	}
	if fresh == 0 || counted == 0 || sum <= 0 {
		return
	}
	mean := float32(sum / float64(counted))
	for i := range cands {
		if cands[i].Ledger.fresh() {
			cands[i].Ledger.seed(mean)
		}
	}
}

// fresh reports whether the entry has never counted a handout.
func (l *Ledger) fresh() bool { return l != nil && l.bits.Load() == 0 }

// seed sets a fresh entry to v; an entry that counted something meanwhile
// is left alone.
func (l *Ledger) seed(v float32) {
	l.bits.CompareAndSwap(0, uint64(math.Float32bits(v))<<32|uint64(nowTicks()))
}
