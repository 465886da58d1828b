//go:build bench

package balance

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"
)

// usedAnswer is one answer as the clients used it: the pod it named and
// the connections it brought in the measured window.
type usedAnswer struct{ backend, conns int }

// lateConn is how long after a cache's next answer first shows a
// connection may still come from its previous answer: a client that
// resolved just before the cache renewed connects a dial later.
const lateConn = 200 * time.Millisecond

// usedAnswers groups the connections events (all from placed clients,
// in the measured window) into the answers that sent them. Directly,
// each connection is its own answer: Go's resolver keeps no cache, so
// each connection follows its own lookup. Through caches, a node's cache
// holds one answer at a time (first=1: one pod) for one TTL, so the
// node's connections in time order run in answers: a connection to
// another pod than the current answer's starts the next answer, unless
// it goes to the previous answer's pod within lateConn of the switch (a
// client that resolved before the renewal); a connection to the current
// pod more than ttl + lateConn after the answer's first starts the next
// answer too, which names the same pod. That split is an estimate of
// where the cache renewed, so the weights of such answers are too; their
// number and sum are not.
func usedAnswers(events []event, nodeOf map[netip.Addr]int, ttl time.Duration, cached bool) []usedAnswer {
	var as []usedAnswer
	if !cached {
		for _, e := range events {
			as = append(as, usedAnswer{backend: e.backend, conns: 1})
		}
		return as
	}
	events = slices.Clone(events)
	slices.SortStableFunc(events, func(a, b event) int { return int(a.at - b.at) })
	type answerAt struct {
		index int // into as
		first time.Duration
	}
	type node struct{ cur, prev *answerAt }
	nodes := map[int]*node{}
	for _, e := range events {
		nd := nodes[nodeOf[e.from]]
		if nd == nil {
			nd = &node{}
			nodes[nodeOf[e.from]] = nd
		}
		switch {
		case nd.cur != nil && as[nd.cur.index].backend == e.backend && e.at-nd.cur.first < ttl+lateConn:
			as[nd.cur.index].conns++
		case nd.prev != nil && as[nd.prev.index].backend == e.backend && e.at-nd.cur.first < lateConn:
			as[nd.prev.index].conns++
		default:
			nd.prev, nd.cur = nd.cur, &answerAt{index: len(as), first: e.at}
			as = append(as, usedAnswer{backend: e.backend, conns: 1})
		}
	}
	return as
}

// answerFloor is ceil(k)/k for k = answers/n answers per pod: the least
// max/mean of answers per pod that whole answers allow, and so of
// connections per pod when every answer brings as many. 0 without
// answers.
func answerFloor(answers, n int) float64 {
	if answers == 0 || n == 0 {
		return 0
	}
	k := float64(answers) / float64(n)
	return math.Ceil(k) / k
}

// randomDeals is how many random deals randomDeal averages.
const randomDeals = 200

// inTurnDeal is max/mean of connections per pod when the answers as, in
// the order of their first connections (usedAnswers keeps it), go to the
// pods in turn: a strict rotation, which counts answers perfectly and
// gives each pod answers spread evenly over the window, but cannot know
// how many connections each will bring. Above answerFloor by the spread
// of connections per answer that a rotation does not even out. 0
// without answers.
func inTurnDeal(as []usedAnswer, n int) float64 {
	if len(as) == 0 || n == 0 {
		return 0
	}
	counts := make([]int, n)
	for i, a := range as {
		counts[i%n] += a.conns
	}
	return measure(counts).MaxOverAvg
}

// randomDeal is the mean max/mean of connections per pod over
// randomDeals deals of the answers as to n pods, each deal in a random
// order and even (every pod the same number of answers, give or take
// one): a balancer that counts answers perfectly but picks which pod
// gets which at random. Unlike a rotation it does not spread each pod's
// answers over the window, so it also feels what changes in time (the
// connections per answer fall when the machine is busy). The seed is
// fixed, so a report reproduces.
func randomDeal(as []usedAnswer, n int) float64 {
	if len(as) == 0 || n == 0 {
		return 0
	}
	w := make([]int, len(as))
	for i, a := range as {
		w[i] = a.conns
	}
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	counts := make([]int, n)
	sum := 0.0
	for range randomDeals {
		rng.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
		clear(counts)
		for i, c := range w {
			counts[i%n] += c
		}
		sum += measure(counts).MaxOverAvg
	}
	return sum / randomDeals
}

// answerWeights is the mean and coefficient of variation of the
// connections per answer of as.
func answerWeights(as []usedAnswer) (mean, cv float64) {
	if len(as) == 0 {
		return 0, 0
	}
	conns := make([]int, len(as))
	for i, a := range as {
		conns[i] = a.conns
	}
	s := measure(conns)
	return float64(s.Total) / float64(len(as)), s.CV
}
