package policy

import (
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hdns-dev/hdns/internal/memtest"
)

func clientAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }

func clientCounts(cands []Endpoint) []int {
	var n []int
	for _, c := range cands {
		n = append(n, c.Ledger.Clients())
	}
	return n
}

func TestHoldingsCount(t *testing.T) {
	cands := liveCands(time.Now(), []float64{0, 0}, []float64{1, 1})
	a, b := cands[0].Ledger, cands[1].Ledger
	var h holdings
	now := nowTicks()
	until := now + 100 // a second
	for i := range 3 {
		h.move(holdShardOf(clientAddr(i)), clientAddr(i), a, now, until, nil)
	}
	h.move(holdShardOf(clientAddr(3)), clientAddr(3), b, now, until, nil)
	if got := fmt.Sprint(clientCounts(cands)); got != "[3 1]" {
		t.Fatalf("3 clients on a, 1 on b: counts %s", got)
	}
	if got := h.current(holdShardOf(clientAddr(0)), clientAddr(0), now); got != a {
		t.Errorf("client 0 holds %p, want a (%p)", got, a)
	}
	// A client's next answer moves its hold; it never counts twice.
	h.move(holdShardOf(clientAddr(0)), clientAddr(0), b, now, until, nil)
	h.move(holdShardOf(clientAddr(0)), clientAddr(0), b, now, until, nil)
	if got := fmt.Sprint(clientCounts(cands)); got != "[2 2]" {
		t.Errorf("client 0 moved to b (twice): counts %s, want [2 2]", got)
	}
	// An answer without a ledger entry ends the hold.
	h.move(holdShardOf(clientAddr(3)), clientAddr(3), nil, now, until, nil)
	if got := fmt.Sprint(clientCounts(cands)); got != "[2 1]" {
		t.Errorf("client 3 moved to an endpoint without an entry: counts %s, want [2 1]", got)
	}
	// Holds end with their answers' TTL: the next move drops them.
	later := until + 1
	if got := h.current(holdShardOf(clientAddr(1)), clientAddr(1), later); got != nil {
		t.Errorf("client 1's hold has expired, current = %p", got)
	}
	for i := range 2 * holdShards {
		h.move(holdShardOf(clientAddr(100+i)), clientAddr(100+i), nil, later, later, nil)
	}
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 0]" {
		t.Errorf("after every hold expired: counts %s, want [0 0]", got)
	}
	// Closing (the chain was dropped) releases every hold and takes no
	// more.
	h.move(holdShardOf(clientAddr(1)), clientAddr(1), a, later, later+100, nil)
	h.close()
	h.move(holdShardOf(clientAddr(2)), clientAddr(2), a, later, later+100, nil)
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 0]" {
		t.Errorf("after close: counts %s, want [0 0]", got)
	}
	// The ledger clock wraps after 497 days; expiry does not care.
	if !before(^uint32(0)-5, 5) || before(5, ^uint32(0)-5) {
		t.Error("before() is wrong across the clock's wrap")
	}
}

// TestHoldingsExpireEachTick: an expired hold stops counting at the next
// tick's first question, even when no later question moves its client's
// shard (behind a cache, the client that asked last time need not ask
// again).
func TestHoldingsExpireEachTick(t *testing.T) {
	cands := liveCands(time.Now(), []float64{0, 0}, []float64{1, 1})
	a, b := cands[0].Ledger, cands[1].Ledger
	var h holdings
	t.Cleanup(h.close)
	now := nowTicks()
	gone, stays := clientAddr(1), clientAddr(2)
	h.move(holdShardOf(gone), gone, a, now, now+100, nil)
	h.move(holdShardOf(stays), stays, b, now, now+300, nil)
	h.expireDue(now + 100)
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 1]" {
		t.Errorf("a tick after one hold ended: counts %s, want [0 1]", got)
	}
	h.move(holdShardOf(gone), gone, a, now+100, now+200, nil)
	h.expireDue(now + 100) // the same tick: no second pass
	h.expireDue(now + 200)
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 1]" {
		t.Errorf("after the second hold ended too: counts %s, want [0 1]", got)
	}
}

func TestHoldingsBounded(t *testing.T) {
	cands := liveCands(time.Now(), []float64{0}, []float64{1})
	var h holdings
	t.Cleanup(h.close)
	now := nowTicks()
	for i := range maxHolders + 1000 {
		h.move(holdShardOf(clientAddr(i)), clientAddr(i), cands[0].Ledger, now, now+360000, nil)
	}
	n := 0
	for i := range h.shards {
		n += h.shards[i].holds.Len()
	}
	if n > maxHolders || cands[0].Ledger.Clients() != n {
		t.Errorf("%d clients: %d holds remembered (bound %d), counted %d", maxHolders+1000, n, maxHolders, cands[0].Ledger.Clients())
	}
}

// TestScoresClients: the clients holding each endpoint (over its share
// weight with live load, normalised by their mean) join the blend; the
// asker's own hold does not count against the endpoint it holds, since
// asking again ends it.
func TestScoresClients(t *testing.T) {
	now := time.Now()
	cands := liveCands(now, []float64{0, 0, 0}, []float64{1, 1, 1})
	var h holdings
	tk := nowTicks()
	until := tk + 100
	h.move(holdShardOf(clientAddr(0)), clientAddr(0), cands[0].Ledger, tk, until, nil)
	h.move(holdShardOf(clientAddr(1)), clientAddr(1), cands[0].Ledger, tk, until, nil)
	h.move(holdShardOf(clientAddr(2)), clientAddr(2), cands[1].Ledger, tk, until, nil)
	in := []int{0, 1, 2}
	// clients [2 1 0], mean 1: terms [2 1 0] on top of live 1 + since 0.
	if got := BlendedScores(cands, in, tk, now, nil, nil); !approx(got, []float64{3, 2, 1}) {
		t.Errorf("clients [2 1 0], asked by a new client: BlendedScores = %v, want [3 2 1]", got)
	}
	// Client 2 asks again: its hold on b ends; clients [2 0 0], mean 2/3.
	own := h.current(holdShardOf(clientAddr(2)), clientAddr(2), tk)
	if got := BlendedScores(cands, in, tk, now, own, nil); !approx(got, []float64{1 + 3, 1, 1}) {
		t.Errorf("clients [2 1 0], asked by b's holder: BlendedScores = %v, want [4 1 1]", got)
	}
	// With live load the count is over the share weight: a Pod with half
	// the share holding one client looks as busy as one holding two.
	cands[2].Live.share.Store(&share{from: cands[2].Live.Sample(), weight: 0.5})
	h.move(holdShardOf(clientAddr(3)), clientAddr(3), cands[2].Ledger, tk, until, nil)
	// clients/w [2 1 2], mean 5/3.
	if got := BlendedScores(cands, in, tk, now, nil, nil); !approx(got, []float64{1 + 1.2, 1 + 0.6, 1 + 1.2}) {
		t.Errorf("clients [2 1 1], c at share 0.5: BlendedScores = %v, want [2.2 1.6 2.2]", got)
	}
	// Without a fresh live value: the ledger over its mean, plus the
	// clients over theirs (no share weights).
	stale := liveCands(now, []float64{1, 1, 2}, []float64{-1, -1, -1})
	stale[2].Live.share.Store(&share{weight: 0.5})
	h.move(holdShardOf(clientAddr(4)), clientAddr(4), stale[0].Ledger, tk, until, nil)
	h.move(holdShardOf(clientAddr(5)), clientAddr(5), stale[2].Ledger, tk, until, nil)
	// ledger [1 1 2]/(4/3), clients [1 0 1]/(2/3).
	if got := BlendedScores(stale, in, tk, now, nil, nil); !approx(got, []float64{0.75 + 1.5, 0.75, 1.5 + 1.5}) {
		t.Errorf("stale live values, clients [1 0 1]: BlendedScores = %v, want [2.25 0.75 3]", got)
	}
	// Nobody holding anything: the ledger alone, as before holds.
	if got := BlendedScores(liveCands(now, []float64{1, 1, 2}, []float64{-1, -1, -1}), in, tk, now, nil, nil); !approx(got, []float64{0.75, 0.75, 1.5}) {
		t.Errorf("no holds: BlendedScores = %v, want the ledger alone [0.75 0.75 1.5]", got)
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
				smp.Ledger, smp.LedgerTicks = cands[i].Ledger.Value(), nowTicks()
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
	if got := cands[0].Ledger.Clients() + cands[1].Ledger.Clients(); got != 4 {
		t.Fatalf("4 clients answered: %d holds counted", got)
	}
	comp.Sweep() // the build that compiled n/a
	comp.Compile(ServicePolicy{Service: "n/a", Annotation: "least-loaded, first=1"})
	comp.Sweep() // n/a's old chain was not asked for: dropped
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 0]" {
		t.Errorf("after the chain was dropped: clients %s, want [0 0]", got)
	}
}

// TestLeastLoadedHoldsRankFirstPlaceOnly: the clients holding an endpoint
// keep it from the first place, which is what those clients use, but not
// from later places. If later places shunned held endpoints, those would
// collect the fewest later-place handouts, win first places on the lower
// ledger and keep more clients than their share (the balance benchmark
// saw two of ten pods at 1.33× the mean that way).
func TestLeastLoadedHoldsRankFirstPlaceOnly(t *testing.T) {
	cands := liveCands(time.Now(), []float64{0, 0, 0}, []float64{math.NaN(), math.NaN(), math.NaN()})
	chain, err := Parse("least-loaded")
	if err != nil {
		t.Fatal(err)
	}
	in := []int{0, 1, 2}
	ll := chain.steps[0].(*leastLoaded)
	tk := nowTicks()
	for c := range 3 {
		ll.holds.move(holdShardOf(clientAddr(c)), clientAddr(c), cands[0].Ledger, tk, tk+6000, nil)
	}
	second := 0
	for range 200 {
		out, _ := chain.Explain(&Request{Client: clientAddr(99), TTL: 30}, cands, in)
		if out[0] == 0 {
			t.Fatalf("the endpoint 3 clients hold came first: %v", out)
		}
		if out[1] == 0 {
			second++
		}
	}
	if second < 50 {
		t.Errorf("the held endpoint was second in %d of 200 answers; want about half (later places rank without holds)", second)
	}
}

// BenchmarkHoldingsMemory reports the heap one remembered client costs a
// least-loaded Service (B/client), at the bound of maxHolders clients.
//
//	go test -run '^$' -bench HoldingsMemory -benchtime 1x ./policy
func BenchmarkHoldingsMemory(b *testing.B) {
	// One measurement, whatever b.N is (scripts/test runs every benchmark
	// 5000 times): it is a size, not a speed.
	cands := liveCands(time.Now(), []float64{0}, []float64{math.NaN()})
	h := new(holdings)
	defer h.close()
	before := memtest.LiveHeap()
	now := nowTicks()
	for i := range maxHolders {
		h.move(holdShardOf(clientAddr(i)), clientAddr(i), cands[0].Ledger, now, now+6000, nil)
	}
	b.ReportMetric(float64(memtest.LiveHeap()-before)/maxHolders, "B/client")
	b.ReportMetric(0, "ns/op") // not a speed
	runtime.KeepAlive(h)
}

// TestHoldingsBudget: past maxHoldsTotal, clients not remembered yet are
// not; remembered ones still move, and a released hold makes room.
func TestHoldingsBudget(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	comp.RegisterMetrics(reg, false)
	refused := gathered(t, reg, "hdns_policy_client_holds_refused_total")
	cands := liveCands(time.Now(), []float64{0, 0}, []float64{1, 1})
	saved := maxHoldsTotal
	maxHoldsTotal = holdsTotal.Load() + 3
	t.Cleanup(func() { maxHoldsTotal = saved })
	var h holdings
	t.Cleanup(h.close)
	now := nowTicks()
	for c := range 5 {
		h.move(holdShardOf(clientAddr(c)), clientAddr(c), cands[0].Ledger, now, now+100, nil)
	}
	if got := fmt.Sprint(clientCounts(cands)); got != "[3 0]" {
		t.Fatalf("5 clients with room for 3: counts %s, want [3 0]", got)
	}
	if got := gathered(t, reg, "hdns_policy_client_holds"); got != float64(maxHoldsTotal) {
		t.Errorf("hdns_policy_client_holds %v, want %d", got, maxHoldsTotal)
	}
	h.move(holdShardOf(clientAddr(0)), clientAddr(0), cands[1].Ledger, now, now+100, nil)
	h.move(holdShardOf(clientAddr(1)), clientAddr(1), nil, now, now+100, nil)
	h.move(holdShardOf(clientAddr(4)), clientAddr(4), cands[1].Ledger, now, now+100, nil)
	if got := fmt.Sprint(clientCounts(cands)); got != "[1 2]" {
		t.Errorf("client 0 moved, client 1 released, client 4 took its room: counts %s, want [1 2]", got)
	}
	if got := gathered(t, reg, "hdns_policy_client_holds_refused_total") - refused; got != 2 {
		t.Errorf("%v clients counted as refused, want 2", got)
	}
}

// gathered is the value of the metric name (one series) in reg.
func gathered(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSweepExpiresHolds: a Service that gets no more questions does not
// keep its expired holds counted (nor against maxHoldsTotal): each
// snapshot build's Sweep drops them.
func TestSweepExpiresHolds(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := comp.Compile(ServicePolicy{Service: "n/a", Annotation: "least-loaded"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(chain.close)
	cands := liveCands(time.Now(), []float64{0, 0}, []float64{math.NaN(), math.NaN()})
	ll := chain.steps[0].(*leastLoaded)
	before := holdsTotal.Load()
	past := nowTicks() - 200
	for c := range 4 {
		ll.holds.move(holdShardOf(clientAddr(c)), clientAddr(c), cands[c%2].Ledger, past, past+100, nil) // ended a second ago
	}
	if holdsTotal.Load() != before+4 {
		t.Fatalf("4 holds: total %d, want %d", holdsTotal.Load(), before+4)
	}
	comp.Compile(ServicePolicy{Service: "n/a", Annotation: "least-loaded"})
	comp.Sweep()
	if got := fmt.Sprint(clientCounts(cands)); got != "[0 0]" || holdsTotal.Load() != before {
		t.Errorf("after a build's Sweep: counts %s, total %d; want [0 0], %d", got, holdsTotal.Load(), before)
	}
}

// TestHoldingsRepeatOnce: a hold begun by a quiet client's question is
// repeated to one more question of that client within repeatTicks, when
// its endpoint is offered, and to no other; a client that asked within
// half its TTL is not quiet. Differences of ticks hold across the clock's
// wrap and for a question whose clock was read just before the hold began.
func TestHoldingsRepeatOnce(t *testing.T) {
	cands := candidates(3)
	a, b, c := cands[0].Ledger, cands[1].Ledger, cands[2].Ledger
	var h holdings
	repeated := holdsRepeated.Load()
	all := func(l *Ledger) int {
		for k := range cands {
			if cands[k].Ledger == l {
				return k
			}
		}
		return -1
	}
	none := func(*Ledger) int { return -1 }
	move := func(i int, to *Ledger, at, until uint32, offered func(*Ledger) int) *Ledger {
		held, k := h.move(holdShardOf(clientAddr(i)), clientAddr(i), to, at, until, offered)
		if held != nil && cands[k].Ledger != held {
			t.Fatalf("client %d: copy of %p at index %d, which is %p", i, held, k, cands[k].Ledger)
		}
		return held
	}
	holds := func(i int, at uint32) *Ledger { return h.current(holdShardOf(clientAddr(i)), clientAddr(i), at) }

	for _, now := range []uint32{1000, math.MaxUint32 - 1} {
		move(0, a, now, now+100, all) // a new client is quiet
		if held := move(0, b, now+1, now+101, all); held != a {
			t.Fatalf("now %d: second question within the window: copy of %p, want a's entry", now, held)
		}
		if holds(0, now+1) != a {
			t.Errorf("now %d: the copy moved the hold", now)
		}
		if held := move(0, b, now+1, now+101, all); held != nil || holds(0, now+1) != b {
			t.Errorf("now %d: third question: copy of %p, holds %p; want no copy and a hold on b", now, held, holds(0, now+1))
		}
		h.close()
		h = holdings{}
	}

	const now = 1000
	move(1, a, now, now+100, all)
	if held := move(1, b, now+repeatTicks, now+repeatTicks+100, all); held != nil {
		t.Error("a question repeatTicks after the answer was taken for a copy")
	}

	move(2, a, now, now+100, all)
	if held := move(2, b, now-1, now+99, all); held != a { // its clock read just before the hold began
		t.Errorf("a copy handled at the same instant: copy of %p, want a's entry", held)
	}

	move(3, a, now, now+100, all)
	if held := move(3, b, now+1, now+101, none); held != nil || holds(3, now+1) != b {
		t.Errorf("a's endpoint not offered: copy of %p, holds %p; want no copy and a hold on b", held, holds(3, now+1))
	}
	if held := move(3, c, now+1, now+101, all); held != nil {
		t.Error("the hold that replaced a fresh one within the window was fresh")
	}

	move(4, a, now, now+100, all)
	move(4, b, now+49, now+149, all) // asked again before half its TTL: busy, not quiet
	if held := move(4, c, now+49, now+149, all); held != nil {
		t.Errorf("busy client: copy of %p, want none", held)
	}
	move(4, a, now+99, now+199, all) // half a TTL after its last question: quiet again
	if held := move(4, b, now+100, now+200, all); held != a {
		t.Errorf("client quiet for half a TTL: copy of %p, want a's entry", held)
	}
	if got := holdsRepeated.Load() - repeated; got != 4 {
		t.Errorf("hdns_policy_copies_total grew by %d, want 4 (the copies taken)", got)
	}
}

// TestLeastLoadedAnswersACopyAlike: a cache forwards a second copy of its
// question while its first is in flight, and keeps one of the two answers
// for all its clients. Both get the same first place and only one is
// counted, so the ledger counts what the cache holds; over many
// candidates too, where the copy's sample may miss the held endpoint.
func TestLeastLoadedAnswersACopyAlike(t *testing.T) {
	for _, n := range []int{10, 1000} {
		if !answersACopyAlike(t, n) {
			t.Fatalf("%d candidates: no three answers within repeatTicks in 20 attempts", n)
		}
	}
}

func answersACopyAlike(t *testing.T, n int) bool {
	chain := mustChain(t, "least-loaded, first=1")
	var s Scratch
	for attempt := range 20 {
		cands, in := candidates(n), indices(n)
		req := &Request{Client: clientAddr(attempt), TTL: 5}
		start := nowTicks()
		first := chain.Pick(req, cands, in, nil, &s)[0]
		counted := cands[first].Ledger.Value()
		chain.Explain(req, cands, in)
		chain.Pick(req, cands, nil, nil, &s) // nothing to offer: holds nothing
		second := chain.Pick(req, cands, in, nil, &s)[0]
		after := cands[first].Ledger.Value()
		third := chain.Pick(req, cands, in, nil, &s)[0]
		if nowTicks()-start >= repeatTicks {
			continue // too slow to be a copy; try again
		}
		if second != first {
			t.Fatalf("%d candidates: copy answered %d, first answer %d", n, second, first)
		}
		if after > counted*1.01 {
			t.Errorf("%d candidates: the copy was counted: %d's ledger went from %.3f to %.3f", n, first, counted, after)
		}
		if third == first {
			t.Errorf("%d candidates: a third question got %d again; only one copy is repeated", n, third)
		}
		if cands[third].Ledger.Value() == 0 {
			t.Errorf("%d candidates: the third question's answer (%d first) was not counted", n, third)
		}
		return true
	}
	return false
}

// markCopy is a step that answers in a fixed order and says its question
// copies an answer that put of first.
type markCopy struct {
	of    *Ledger
	order []int
}

func (m markCopy) Pick(req *Request, _ []Endpoint, _, out []int) []int {
	req.repeat = m.of
	return append(out, m.order...)
}

// TestPickCountsACopyOnlyWhileItStaysFirst: Chain.Pick leaves a copy's
// handouts out of the ledger only while the copied endpoint is still first
// in the chain's answer; a later step that reorders makes it another
// answer, counted like any.
func TestPickCountsACopyOnlyWhileItStaysFirst(t *testing.T) {
	for _, tc := range []struct {
		name    string
		order   []int
		counted bool
	}{
		{name: "copied endpoint first", order: []int{1, 0, 2}, counted: false},
		{name: "moved by a later step", order: []int{0, 1, 2}, counted: true},
	} {
		cands := candidates(3)
		c := &Chain{steps: []Step{markCopy{of: cands[1].Ledger, order: tc.order}}, names: []string{"mark"}}
		var s Scratch
		c.Pick(&Request{TTL: 5}, cands, indices(3), nil, &s)
		total := 0.0
		for _, e := range cands {
			total += e.Ledger.Value()
		}
		if got := total > 0; got != tc.counted {
			t.Errorf("%s: ledger total %.2f after the answer, counted = %v, want %v", tc.name, total, got, tc.counted)
		}
	}
}
