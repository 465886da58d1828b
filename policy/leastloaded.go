package policy

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
)

// leastLoaded puts first the candidate with the lowest BlendedScores (the handout
// ledger blended with fresh live load; ties broken at random; with
// least-loaded=count, live values that count what the answers brought tilt
// the ledger instead, see countScores), and orders
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
// Over more than exactLimit candidates, when the chain wants at most
// maxSampledPlaces places (first=N), the step ranks a sample instead, so
// that its cost does not grow with the Service: sampleSize candidates
// drawn at random, two more per later place, and the runner-up of the
// step's previous sample (power of d choices with memory). Its first
// place is then the least loaded of the sample, scored as BlendedScores
// scores the sample alone. Each handout raises its endpoint, and the
// runner-up carried over keeps the next-least-loaded in view, so the
// ledger stays level to within about one handout, as with the exact scan
// (TestLeastLoadedSampledStaysLevel); what a sample can miss is an
// endpoint far below the others (a new one is seeded level, seedNew), and
// a few missed handouts weigh more the fewer each endpoint gets: the exact
// scan stays for the Services small enough to afford it. The live load's share
// weights are folded over every candidate, once per poll (foldPoll), so
// that they follow the Service's mean, not a sample's.
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
	// runnerUp is the position among its candidates of the second least
	// loaded of the last sample, which the next sample includes.
	runnerUp atomic.Uint32
	// kind is how live values are blended with the ledger (liveKind).
	kind liveKind
}

const (
	// exactLimit is the most candidates least-loaded scans whole for a
	// few places. A scan of that many fits its stack buffers and costs a
	// few times what a sample does; below it, where each endpoint's share
	// of the handouts is large, the exact first place keeps their
	// rotation strict (through caches, one handout is a cache's answer
	// for a whole TTL).
	exactLimit = 64
	// sampleSize is how many candidates a sampled first place is drawn
	// from, besides the last sample's runner-up.
	sampleSize = 8
	// maxSampledPlaces is the most places least-loaded samples for; a
	// chain that wants more (or all) scans every candidate.
	maxSampledPlaces = 8
)

func (ll *leastLoaded) Pick(req *Request, cands []Endpoint, in, out []int) []int {
	if len(in) == 0 {
		return out // nothing to hold: leave the client's hold as it is
	}
	start := len(out)
	m := req.places(len(in))
	r := req.rand()
	// The pool is what is ranked: every candidate, or a sample of them
	// whose positions in in are pos.
	var posBuf [sampleSize + 2*maxSampledPlaces]int
	var pos []int
	if len(in) > exactLimit && m <= maxSampledPlaces {
		pos = ll.sample(r, len(in), m, posBuf[:0])
		for _, p := range pos {
			out = append(out, in[p])
		}
	} else {
		out = append(out, in...)
	}
	left := out[start:]
	// BlendedScores are read once, at one instant, in the order of left: the
	// first place on scores+clients, later places on scores (scoreParts).
	var buf, cbuf [64]float64
	scores, clients := buf[:0], cbuf[:0]
	if len(left) > len(buf) {
		scores, clients = make([]float64, 0, len(left)), make([]float64, 0, len(left))
	}
	now := nowTicks()
	wall := wallNow(cands, left)
	if pos != nil && !wall.IsZero() && slices.ContainsFunc(left, func(i int) bool { return unfolded(&cands[i], wall) }) {
		foldPoll(cands, in, wall)
	}
	holds := req.Client.IsValid()
	var own *Ledger
	var shard int
	if holds {
		ll.holds.expireDue(now)
		shard = holdShardOf(req.Client)
		own = ll.holds.current(shard, req.Client, now)
	}
	scores, clients = scoreParts(cands, left, now, wall, own, ll.kind, scores, clients)
	best, second := leastOf(scores, clients, r)
	if pos != nil {
		ll.runnerUp.Store(uint32(pos[second]))
	}
	left[0], left[best] = left[best], left[0]
	scores[0], scores[best] = scores[best], scores[0]
	if holds && !req.DryRun {
		out, scores = ll.keepCopy(req, cands, in, out, start, pos != nil, shard, now, scores)
		left = out[start:]
	}
	left, scores = left[1:], scores[1:]
	for placed := 1; len(left) > 1 && placed < m; placed++ {
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
	return out[:start+m]
}

// sample returns the positions (among n candidates) of the pool a sampled
// ranking of m places scores: sampleSize + 2(m-1) drawn uniformly without
// repeats, and the last sample's runner-up when it is not among them.
func (ll *leastLoaded) sample(r *rand.Rand, n, m int, pos []int) []int {
	size := sampleSize + 2*(m-1)
	for len(pos) < size {
		if p := r.IntN(n); !slices.Contains(pos, p) {
			pos = append(pos, p)
		}
	}
	if p := int(ll.runnerUp.Load()); p < n && !slices.Contains(pos, p) {
		pos = append(pos, p)
	}
	return pos
}

// leastOf returns the position of the lowest scores+clients (ties broken
// at random) and of the runner-up.
func leastOf(scores, clients []float64, r *rand.Rand) (best, second int) {
	ties := 1
	for k := 1; k < len(scores); k++ {
		sk, sb := scores[k]+clients[k], scores[best]+clients[best]
		switch {
		case sk < sb:
			best, second, ties = k, best, 1
		case sk == sb:
			ties++
			if r.IntN(ties) == 0 {
				best, second = k, best
			} else {
				second = k
			}
		case second == best || sk < scores[second]+clients[second]:
			second = k
		}
	}
	return best, second
}

// keepCopy moves the client's hold to the endpoint out[start] (the first
// place), unless holdings.move takes the question for a copy of the
// client's last one: then the held endpoint takes the first place,
// appended to out from in when the pool is a sample without it, and
// req.repeat is set. scores follow out[start:].
func (ll *leastLoaded) keepCopy(req *Request, cands []Endpoint, in, out []int, start int, sampled bool, shard int, now uint32, scores []float64) ([]int, []float64) {
	left := out[start:]
	ttl := time.Duration(max(req.TTL, 1)) * time.Second
	// Positions past the pool are in's, offset by the pool's length.
	offered := func(l *Ledger) int {
		for k, i := range left {
			if cands[i].Ledger == l {
				return k
			}
		}
		if sampled {
			for p, i := range in {
				if cands[i].Ledger == l {
					return len(left) + p
				}
			}
		}
		return -1
	}
	// The check for a copy is move's, under its lock: a copy handled
	// at the same instant as the question it copies found no hold
	// above, but finds it there.
	held, k := ll.holds.move(shard, req.Client, cands[left[0]].Ledger, now, now+uint32(ttl/tick), offered)
	if held == nil {
		return out, scores
	}
	if k >= len(left) {
		out, scores = append(out, in[k-len(left)]), append(scores, 0)
		left, k = out[start:], len(left)
	}
	left[0], left[k] = left[k], left[0]
	scores[0], scores[k] = scores[k], scores[0]
	req.repeat = held
	return out, scores
}

// unfolded reports whether e has a fresh live value not yet folded into
// its share weight.
func unfolded(e *Endpoint, wall time.Time) bool {
	s := e.Live.Sample()
	if !s.Fresh(wall) || s.Missing {
		return false
	}
	sh := e.Live.share.Load()
	return sh == nil || sh.from != s
}

// foldPoll folds every candidate's fresh live value into its share weight
// against the mean over in, as a ranking of all of in does (applyShares),
// so that a sampled ranking reads weights the Service's mean made, not a
// sample's. Values with no mean to weigh them against (all 0) leave the
// weights as they are. It runs once per poll of a sampled Service's
// candidates: a ranking that finds a value unfolded calls it.
func foldPoll(cands []Endpoint, in []int, wall time.Time) {
	var sum float64
	n := 0
	for _, i := range in {
		if s := cands[i].Live.Sample(); s.Fresh(wall) && !s.Missing {
			sum += s.Value
			n++
		}
	}
	usable := n > 0 && sum > 0 && !math.IsInf(sum, 0)
	mean := sum / float64(n)
	for _, i := range in {
		l := cands[i].Live
		if s := l.Sample(); s.Fresh(wall) && !s.Missing {
			rel := 1.0 // exp(0): marked folded, weight kept
			if usable {
				rel = s.Value / mean
			}
			l.weight(s, rel)
		}
	}
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
