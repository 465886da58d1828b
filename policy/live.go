package policy

import (
	"math"
	"sort"
	"sync/atomic"
	"time"
)

// Sample is one endpoint's result of one successful poll of a load source
// (a Prometheus query). Samples are immutable.
type Sample struct {
	// Value is the endpoint's load: finite and ≥ 0. Meaningless when
	// Missing.
	Value float64
	// Missing says the poll succeeded but reported no usable value for
	// the endpoint.
	Missing bool
	// At is when the source read the value.
	At time.Time
	// Until is when the sample goes stale: past it, least-loaded ignores
	// it (see Scores).
	Until time.Time
	// Ledger is the endpoint's handout ledger value at LedgerTicks (when
	// the poll was published), so that least-loaded can tell the
	// handouts made since the value was read.
	Ledger      float64
	LedgerTicks uint32
}

// Fresh reports whether the sample may still be used at now.
func (s *Sample) Fresh(now time.Time) bool { return s != nil && now.Before(s.Until) }

// Live is one endpoint's latest live load Sample under one load query. A
// load source writes it once per poll; queries read it with one atomic load
// and no lock. The zero value holds no sample.
type Live struct {
	p atomic.Pointer[Sample]
}

// Sample returns the latest sample, or nil when no poll has published
// one yet. A nil Live has no sample.
func (l *Live) Sample() *Sample {
	if l == nil {
		return nil
	}
	return l.p.Load()
}

// Set stores s as the latest sample; nil clears it.
func (l *Live) Set(s *Sample) { l.p.Store(s) }

type liveKey struct {
	query, key string
}

type liveEntry struct {
	live *Live
	gen  uint64
}

// Live returns the live load cell of the endpoint key (a Pod's
// "namespace/name") under the load query, creating it. Like Load, cells
// survive as long as some snapshot build asks for them; the same (query,
// key) gets the same cell build after build, so a value polled before a
// rebuild stays visible after it.
func (c *Compiler) Live(query, key string) *Live {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := liveKey{query, key}
	e := c.lives[k]
	if e == nil {
		e = &liveEntry{live: new(Live)}
		c.lives[k] = e
	}
	e.gen = c.gen
	return e.live
}

// LiveQueries lists, sorted and once each, the load queries some endpoint
// of the current snapshot has a live cell for.
func (c *Compiler) LiveQueries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	var qs []string
	for k := range c.lives {
		if !seen[k.query] {
			seen[k.query] = true
			qs = append(qs, k.query)
		}
	}
	sort.Strings(qs)
	return qs
}

// UpdateLive publishes the result of one successful poll of query, read at
// at and fresh until until: every cell of query gets a Sample with its
// value from values, or marked Missing when values has none (the endpoint
// then ranks on its handouts alone at once), and with the endpoint's
// ledger value now. values must hold only finite values ≥ 0. A failed
// poll must not call UpdateLive: the cells then keep their samples until
// those go stale.
func (c *Compiler) UpdateLive(query string, values map[string]float64, at, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := nowTicks()
	for k, e := range c.lives {
		if k.query != query {
			continue
		}
		s := &Sample{At: at, Until: until, LedgerTicks: now}
		if l := c.loads[k.key]; l != nil {
			s.Ledger = l.load.valueAt(now)
		}
		if v, ok := values[k.key]; ok {
			s.Value = v
		} else {
			s.Missing = true
		}
		e.live.Set(s)
	}
}

// Scores computes the least-loaded score of each candidate in, appending
// to out in the order of in, at the instant now (ledger ticks and wall
// time read once by the caller).
//
// Without a fresh live value that is > 0 for some candidate, the score is
// the handout ledger normalised by its mean over in:
//
//	score(i) = ledger(i) / mean(ledger)
//
// (the order least-loaded had before live load). With one, each term is
// normalised by its mean over the candidates that have it, so that
// neither unit matters:
//
//	score(i) = live(i)/mean(live) + since(i)/mean(since)
//
// where live(i) is the fresh polled value and since(i) the handouts (in
// ledger units) made to i since that value was read: the ledger now minus
// the ledger recorded in the sample, decayed. The second term keeps a
// burst of handouts between two polls from all going to the pod that
// looked idle at the last poll: each handout raises its since term, so
// within one poll interval the shares settle where the sums are equal, in
// proportion to spare capacity, and the next poll corrects them. A
// candidate without a fresh value gets the mean of each term it lacks (1):
// it neither attracts nor repels traffic by live load, and with a fresh
// sample whose value is Missing it still ranks by its own handouts since
// the poll. A term whose mean is 0 is 0 for everyone.
func Scores(cands []Endpoint, in []int, now uint32, wall time.Time, out []float64) []float64 {
	start := len(out)
	// Each sample is read once, so that a poll landing meanwhile cannot
	// make one candidate's terms disagree.
	var liveBuf, sinceBuf [64]float64
	live, since := liveBuf[:0], sinceBuf[:0]
	if len(in) > len(liveBuf) {
		live, since = make([]float64, 0, len(in)), make([]float64, 0, len(in))
	}
	var sumLedger, sumLive, sumSince float64
	nLive, nSince := 0, 0
	for _, i := range in {
		l := cands[i].Load.valueAt(now)
		sumLedger += l
		out = append(out, l)
		v, d := -1.0, -1.0 // no fresh value, no handout count since a poll
		if s := cands[i].Live.Sample(); s.Fresh(wall) {
			d = max(0, l-float64(decay(float32(s.Ledger), s.LedgerTicks, now)))
			sumSince += d
			nSince++
			if !s.Missing {
				v = s.Value
				sumLive += v
				nLive++
			}
		}
		live, since = append(live, v), append(since, d)
	}
	scores := out[start:]
	if nLive == 0 || sumLive <= 0 || math.IsInf(sumLive, 0) {
		// No live value tells candidates apart: the ledger alone.
		if sumLedger > 0 {
			meanLedger := sumLedger / float64(len(in))
			for k := range scores {
				scores[k] /= meanLedger
			}
		}
		return out
	}
	meanLive := sumLive / float64(nLive)
	meanSince := sumSince / float64(nSince)
	for k := range scores {
		liveTerm, sinceTerm := 1.0, 1.0 // the means of the terms
		if live[k] >= 0 {
			liveTerm = live[k] / meanLive
		}
		switch {
		case meanSince == 0:
			sinceTerm = 0
		case since[k] >= 0:
			sinceTerm = since[k] / meanSince
		}
		scores[k] = liveTerm + sinceTerm
	}
	return out
}

// usesLoad marks steps that read load: the zone gives their Services'
// endpoints live load cells.
func (leastLoaded) usesLoad() {}
