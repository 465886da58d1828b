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
	// it (see BlendedScores).
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
	p     atomic.Pointer[Sample]
	share atomic.Pointer[share]
}

// share is an endpoint's integral share weight: how much of its Service's
// handouts least-loaded gives it relative to the others (1 is an equal
// share), and the sample last folded into it. Immutable; swapped whole.
type share struct {
	from   *Sample
	weight float64
}

// Share weights move by exp(-shareGain·(rel-1)) per polled sample, where
// rel is the endpoint's live value over its Service's mean, and stay within
// [1/shareLimit, shareLimit]. The gain is low because the signal lags the
// traffic by a scrape and a poll: a higher gain overshoots and oscillates.
const (
	shareGain  = 0.25
	shareLimit = 16.0
)

// weight returns the endpoint's share weight after folding in sample s,
// whose value is rel times its Service's mean (rel < 0: no value, nothing
// to fold). Each sample is folded once, by whichever query sees it first;
// a concurrent fold of the same sample loses its CompareAndSwap and reads
// the winner's weight, which is the same.
func (l *Live) weight(s *Sample, rel float64) float64 {
	for {
		old := l.share.Load()
		w := 1.0
		if old != nil {
			w = old.weight
			if old.from == s {
				return w
			}
		}
		if rel < 0 {
			return w
		}
		w = min(shareLimit, max(1/shareLimit, w*math.Exp(-shareGain*(rel-1))))
		if l.share.CompareAndSwap(old, &share{from: s, weight: w}) {
			return w
		}
	}
}

// Weight is the endpoint's share weight (1 before any live value).
func (l *Live) Weight() float64 {
	if l == nil {
		return 1
	}
	if s := l.share.Load(); s != nil {
		return s.weight
	}
	return 1
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
// "namespace/name") under the load query, creating it. Like ledger entries, cells
// survive as long as some snapshot build asks for them; the same (query,
// key) gets the same cell build after build, so a value polled before a
// rebuild stays visible after it.
func (c *Compiler) Live(query, key string) *Live {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live(query, key)
}

// live is Live with c.mu held.
func (c *Compiler) live(query, key string) *Live {
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
		if l := c.ledgers[c.keyHash(k.key)]; l != nil {
			s.Ledger = l.valueAt(now)
		}
		if v, ok := values[k.key]; ok {
			s.Value = v
		} else {
			s.Missing = true
		}
		e.live.Set(s)
	}
}

// BlendedScores computes the least-loaded score of each candidate in, appending
// to out in the order of in, at the instant now (ledger ticks and wall
// time read once by the caller).
//
// Without a fresh live value that is > 0 for some candidate, the score is
// the handout ledger normalised by its mean over in, plus the clients
// term below:
//
//	score(i) = ledger(i)/mean(ledger) + c(i)/mean(c)
//
// With one, each term is normalised by its mean over the candidates that
// have it, so that neither unit matters:
//
//	score(i) = live(i)/mean(live) + r(i)/mean(r) + c(i)/mean(c),  r(i) = since(i)/w(i)
//
// live(i) is the fresh polled value and since(i) the handouts (in ledger
// units) made to i since that value was read: the ledger now minus the
// ledger recorded in the sample, decayed. The second term keeps a burst of
// handouts between two polls from all going to the pod that looked idle at
// the last poll: each handout raises it, so within one poll interval the
// handouts settle in proportion to w(i), tilted towards spare capacity by
// the first term, and the next poll corrects them.
//
// w(i) is the endpoint's share weight, an integral controller: every
// polled sample multiplies it by exp(-g·(live(i)/mean(live) - 1)). The
// first term alone is a proportional controller: it settles where a slower
// pod still carries more load than its peers (its extra load is what keeps
// its share down). The weights keep moving until the live values are
// equal, and remember the shares that make them so; the live term still
// acts at once on a sudden change. Sample by sample the product of the
// Service's weights stays 1, so they do not drift together.
//
// c(i) = clients(i)/w(i) counts the clients holding each endpoint now (see
// holdings), leaving out the hold of the client asking (own, nil for
// none), which its question ends; w(i) is 1 without live load. For
// clients that resolve before each request the holds are their requests
// in flight at this instant, which neither the handouts (a count of the
// past) nor a polled value (a scrape and a poll old) can tell; without
// them a closed loop of such clients piles its requests onto one backend
// (BenchmarkClosedLoop in loadsource). The term is 0 for everyone while no
// client holds any candidate; least-loaded ranks only its first place with
// it (see scoreParts).
//
// A candidate without a fresh value gets the mean of each live term it
// lacks (1): it neither attracts nor repels traffic by live load, and
// with a fresh sample whose value is Missing it still ranks by its own
// handouts since the poll, at its last weight. A term whose mean is 0 is
// 0 for everyone.
func BlendedScores(cands []Endpoint, in []int, now uint32, wall time.Time, own *Ledger, out []float64) []float64 {
	start := len(out)
	var buf [64]float64
	clients := buf[:0]
	if len(in) > len(buf) {
		clients = make([]float64, 0, len(in))
	}
	out, clients = scoreParts(cands, in, now, wall, own, liveLevel, out, clients)
	for k, c := range clients {
		out[start+k] += c
	}
	return out
}

// scoreParts is BlendedScores in two parts: it appends to out the scores without
// the clients term, and to clients that term alone (0s when no client
// holds a candidate). least-loaded ranks its first place on their sum and
// its later places on out alone: the holds are what the first place's
// clients use, and later places that shunned held endpoints would leave
// those endpoints the lowest ledger, so that they kept winning first
// places on it. kind says how fresh live values are blended: as levels
// (above) or as counts (countScores); either way the share weights divide
// the clients term.
func scoreParts(cands []Endpoint, in []int, now uint32, wall time.Time, own *Ledger, kind liveKind, out, clientsOut []float64) ([]float64, []float64) {
	start := len(out)
	// Each sample is read once, so that a poll landing meanwhile cannot
	// make one candidate's terms disagree.
	var liveBuf, sinceBuf, clientsBuf [64]float64
	var sampleBuf [64]*Sample
	live, since, clients, samples := liveBuf[:0], sinceBuf[:0], clientsBuf[:0], sampleBuf[:0]
	if len(in) > len(liveBuf) {
		live, since, clients, samples = make([]float64, 0, len(in)), make([]float64, 0, len(in)), make([]float64, 0, len(in)), make([]*Sample, 0, len(in))
	}
	var sumLedger, sumLive float64
	nLive := 0
	for _, i := range in {
		l := cands[i].Ledger.valueAt(now)
		sumLedger += l
		out = append(out, l)
		v, d := -1.0, -1.0 // no fresh value, no handout count since a poll
		s := cands[i].Live.Sample()
		if s.Fresh(wall) {
			d = max(0, l-float64(decay(float32(s.Ledger), s.LedgerTicks, now)))
			if !s.Missing {
				v = s.Value
				sumLive += v
				nLive++
			}
		} else {
			s = nil
		}
		held := float64(cands[i].Ledger.Clients())
		if own != nil && cands[i].Ledger == own && held > 0 {
			held-- // the asker's hold ends with this question
		}
		live, since, clients, samples = append(live, v), append(since, d), append(clients, held), append(samples, s)
	}
	scores := out[start:]
	if nLive == 0 || sumLive <= 0 || math.IsInf(sumLive, 0) {
		// No live value tells candidates apart: the ledger and the holds.
		if sumLedger > 0 {
			meanLedger := sumLedger / float64(len(in))
			for k := range scores {
				scores[k] /= meanLedger
			}
		}
		return out, appendMeanNormalised(clientsOut, clients)
	}
	meanLive := sumLive / float64(nLive)
	meanRatio := applyShares(cands, in, samples, live, since, clients, meanLive)
	if kind == liveCount {
		countScores(scores, live, sumLedger, meanLive)
		return out, appendMeanNormalised(clientsOut, clients)
	}
	for k := range scores {
		liveTerm, ratioTerm := 1.0, 1.0 // the means of the terms
		if live[k] >= 0 {
			liveTerm = live[k] / meanLive
		}
		switch {
		case meanRatio == 0:
			ratioTerm = 0
		case since[k] >= 0:
			ratioTerm = since[k] / meanRatio
		}
		scores[k] = liveTerm + ratioTerm
	}
	return out, appendMeanNormalised(clientsOut, clients)
}

// applyShares divides each candidate's since and clients terms by its
// share weight, folding its fresh sample (samples[k], nil for none) into
// the weight first, and returns the mean of since over the candidates
// with a fresh sample.
func applyShares(cands []Endpoint, in []int, samples []*Sample, live, since, clients []float64, meanLive float64) float64 {
	var sumRatio float64
	nRatio := 0
	for k, i := range in {
		l := cands[i].Live
		var w float64
		if samples[k] != nil {
			rel := -1.0
			if live[k] >= 0 {
				rel = live[k] / meanLive
			}
			w = l.weight(samples[k], rel)
			since[k] /= w
			sumRatio += since[k]
			nRatio++
		} else {
			w = l.Weight()
		}
		clients[k] /= w
	}
	return sumRatio / float64(nRatio)
}

// appendMeanNormalised appends each of term over the mean of term to out;
// 0s when the mean is 0.
func appendMeanNormalised(out, term []float64) []float64 {
	var sum float64
	for _, v := range term {
		sum += v
	}
	mean := sum / float64(len(term))
	for _, v := range term {
		if sum <= 0 {
			v = 0
		} else {
			v /= mean
		}
		out = append(out, v)
	}
	return out
}

// Close ends the step's holds: its chain is no longer any Service's.
func (ll *leastLoaded) Close() { ll.holds.close() }

// Expire drops the step's expired holds.
func (ll *leastLoaded) Expire() { ll.holds.expireAll(nowTicks()) }
