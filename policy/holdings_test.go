package policy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func clientAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }

func clientCounts(cands []Endpoint) []int {
	var n []int
	for _, c := range cands {
		n = append(n, c.Live.Clients())
	}
	return n
}

func TestHoldingsCount(t *testing.T) {
	now := time.Now()
	cands := liveCands(now, []float64{0, 0}, []float64{1, 1})
	a, b := cands[0].Live, cands[1].Live
	var h holdings
	until := now.Add(time.Second)
	for i := range 3 {
		h.move(clientAddr(i), a, now, until)
	}
	h.move(clientAddr(3), b, now, until)
	if got := fmt.Sprint(clientCounts(cands)); got != "[3 1]" {
		t.Fatalf("3 clients on a, 1 on b: counts %s", got)
	}
	if got := h.current(clientAddr(0), now); got != a {
		t.Errorf("client 0 holds %p, want a (%p)", got, a)
	}
	// A client's next answer moves its hold; it never counts twice.
	h.move(clientAddr(0), b, now, until)
	h.move(clientAddr(0), b, now, until)
	if got := fmt.Sprint(clientCounts(cands)); got != "[2 2]" {
		t.Errorf("client 0 moved to b (twice): counts %s, want [2 2]", got)
	}
	// An answer without a Live cell ends the hold.
	h.move(clientAddr(3), nil, now, until)
	if got := fmt.Sprint(clientCounts(cands)); got != "[2 1]" {
		t.Errorf("client 3 moved to an endpoint without a cell: counts %s, want [2 1]", got)
	}
	// Holds end with their answers' TTL: the next move drops them.
	later := until.Add(time.Millisecond)
	if got := h.current(clientAddr(1), later); got != nil {
		t.Errorf("client 1's hold has expired, current = %p", got)
	}
	for i := range 2 * holdShards {
		h.move(clientAddr(100+i), nil, later, later)
	}
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 0]" {
		t.Errorf("after every hold expired: counts %s, want [0 0]", got)
	}
	// Closing (the chain was dropped) releases every hold and takes no
	// more.
	h.move(clientAddr(1), a, later, later.Add(time.Second))
	h.close()
	h.move(clientAddr(2), a, later, later.Add(time.Second))
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 0]" {
		t.Errorf("after close: counts %s, want [0 0]", got)
	}
}

func TestHoldingsBounded(t *testing.T) {
	now := time.Now()
	cands := liveCands(now, []float64{0}, []float64{1})
	var h holdings
	for i := range maxHolders + 1000 {
		h.move(clientAddr(i), cands[0].Live, now, now.Add(time.Hour))
	}
	n := 0
	for i := range h.shards {
		n += h.shards[i].holds.Len()
	}
	if n > maxHolders || cands[0].Live.Clients() != n {
		t.Errorf("%d clients: %d holds remembered (bound %d), counted %d", maxHolders+1000, n, maxHolders, cands[0].Live.Clients())
	}
}

// TestScoresClients: with live load, the clients holding each endpoint
// (over its share weight, normalised by their mean) join the blend; the
// asker's own hold does not count against the endpoint it holds, since
// asking again ends it.
func TestScoresClients(t *testing.T) {
	now := time.Now()
	cands := liveCands(now, []float64{0, 0, 0}, []float64{1, 1, 1})
	var h holdings
	until := now.Add(time.Second)
	h.move(clientAddr(0), cands[0].Live, now, until)
	h.move(clientAddr(1), cands[0].Live, now, until)
	h.move(clientAddr(2), cands[1].Live, now, until)
	in := []int{0, 1, 2}
	// clients [2 1 0], mean 1: terms [2 1 0] on top of live 1 + since 0.
	if got := Scores(cands, in, nowTicks(), now, nil, nil); !approx(got, []float64{3, 2, 1}) {
		t.Errorf("clients [2 1 0], asked by a new client: Scores = %v, want [3 2 1]", got)
	}
	// Client 2 asks again: its hold on b ends; clients [2 0 0], mean 2/3.
	own := h.current(clientAddr(2), now)
	if got := Scores(cands, in, nowTicks(), now, own, nil); !approx(got, []float64{1 + 3, 1, 1}) {
		t.Errorf("clients [2 1 0], asked by b's holder: Scores = %v, want [4 1 1]", got)
	}
	// The count is over the share weight: a Pod with half the share
	// holding one client looks as busy as one holding two.
	cands[2].Live.share.Store(&share{from: cands[2].Live.Sample(), weight: 0.5})
	h.move(clientAddr(3), cands[2].Live, now, until)
	// clients/w [2 1 2], mean 5/3.
	if got := Scores(cands, in, nowTicks(), now, nil, nil); !approx(got, []float64{1 + 1.2, 1 + 0.6, 1 + 1.2}) {
		t.Errorf("clients [2 1 1], c at share 0.5: Scores = %v, want [2.2 1.6 2.2]", got)
	}
	// Without a fresh live value, the ledger alone, as before.
	stale := liveCands(now, []float64{1, 1, 1}, []float64{-1, -1, -1})
	h.move(clientAddr(4), stale[0].Live, now, until)
	if got := Scores(stale, in, nowTicks(), now, nil, nil); !approx(got, []float64{1, 1, 1}) {
		t.Errorf("stale live values, clients [1 0 0]: Scores = %v, want the ledger alone [1 1 1]", got)
	}
}

// TestLeastLoadedHolds is the closed loop in miniature: clients that ask
// again as soon as their request is done. Live values and handouts since
// the poll are equal, so only the holds tell the endpoints apart; each of
// 6 clients in turn must land where the fewest others are.
func TestLeastLoadedHolds(t *testing.T) {
	now := time.Now()
	cands := liveCands(now, []float64{0, 0, 0}, []float64{1, 1, 1})
	chain, err := Parse("least-loaded")
	if err != nil {
		t.Fatal(err)
	}
	var s Scratch
	in := []int{0, 1, 2}
	for round := range 50 {
		for c := range 6 {
			req := &Request{Client: clientAddr(c), TTL: 30}
			// Keep the handouts-since-the-poll term equal, so that only the
			// holds order the candidates.
			for i := range cands {
				smp := *cands[i].Live.Sample()
				smp.Ledger, smp.LedgerTicks = cands[i].Load.Value(), nowTicks()
				cands[i].Live.Set(&smp)
			}
			chain.Pick(req, cands, in, nil, &s)
			counts := clientCounts(cands)
			lo, hi := min(counts[0], counts[1], counts[2]), max(counts[0], counts[1], counts[2])
			if round > 0 && hi-lo > 1 {
				t.Fatalf("round %d, client %d: clients per endpoint %v, want within 1", round, c, counts)
			}
		}
	}
	if got := fmt.Sprint(clientCounts(cands)); got != "[2 2 2]" {
		t.Errorf("6 clients over 3 endpoints: %s, want [2 2 2]", got)
	}
	// Explaining a choice holds nothing.
	chain.Explain(&Request{Client: clientAddr(99), TTL: 30}, cands, in)
	if got := fmt.Sprint(clientCounts(cands)); got != "[2 2 2]" {
		t.Errorf("after an explain: %s, want [2 2 2]", got)
	}
}

// TestDroppedChainReleasesHolds: when a Service's least-loaded chain is
// dropped (the Service is gone, or its policy changed), the clients it
// counted stop counting in the endpoints' Live cells, which outlive it.
func TestDroppedChainReleasesHolds(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cands := liveCands(now, []float64{0, 0}, []float64{1, 1})
	chain, err := comp.Compile(ServicePolicy{Service: "n/a", Annotation: "least-loaded"})
	if err != nil {
		t.Fatal(err)
	}
	var s Scratch
	for c := range 4 {
		chain.Pick(&Request{Client: clientAddr(c), TTL: 30}, cands, []int{0, 1}, nil, &s)
	}
	if got := cands[0].Live.Clients() + cands[1].Live.Clients(); got != 4 {
		t.Fatalf("4 clients answered: %d holds counted", got)
	}
	comp.Sweep() // the build that compiled n/a
	comp.Compile(ServicePolicy{Service: "n/a", Annotation: "least-loaded, first=1"})
	comp.Sweep() // n/a's old chain was not asked for: dropped
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 0]" {
		t.Errorf("after the chain was dropped: clients %s, want [0 0]", got)
	}
}
