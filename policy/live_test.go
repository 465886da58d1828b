package policy

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// liveCands makes endpoints with the given ledger values and live values
// (NaN: no sample; negative: a stale sample of -v).
func liveCands(now time.Time, ledger, live []float64) []Endpoint {
	cands := make([]Endpoint, len(ledger))
	for i := range cands {
		cands[i].Key = string(rune('a' + i))
		cands[i].Ledger = new(Ledger)
		cands[i].Ledger.Add(float32(ledger[i]))
		cands[i].Live = new(Live)
		switch v := live[i]; {
		case math.IsNaN(v):
		case v < 0:
			cands[i].Live.Set(&Sample{Value: -v, At: now.Add(-time.Minute), Until: now.Add(-time.Second)})
		default:
			cands[i].Live.Set(&Sample{Value: v, At: now, Until: now.Add(time.Second)})
		}
		// The sample is already folded into an equal share weight, so
		// that the blend's figures are plain ratios.
		cands[i].Live.share.Store(&share{from: cands[i].Live.Sample(), weight: 1})
	}
	return cands
}

func approx(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Abs(x-y) < 1e-4 })
}

func TestScoresBlend(t *testing.T) {
	now := time.Now()
	nan := math.NaN()
	tests := []struct {
		name         string
		kind         liveKind
		ledger, live []float64
		want         []float64
	}{
		{"no live values: the ledger normalised", liveLevel,
			[]float64{1, 2, 3}, []float64{nan, nan, nan}, []float64{0.5, 1, 1.5}},
		{"fresh values: ledger/mean + live/mean", liveLevel,
			[]float64{1, 2, 3}, []float64{1, 1, 4}, []float64{0.5 + 0.5, 1 + 0.5, 1.5 + 2}},
		{"no handouts yet: live alone", liveLevel,
			[]float64{0, 0, 0}, []float64{2, 4, 0}, []float64{1, 2, 0}},
		{"missing value: the mean of the fresh ones", liveLevel,
			[]float64{2, 2, 2}, []float64{1, 3, nan}, []float64{1 + 0.5, 1 + 1.5, 1 + 1}},
		{"missing value first", liveLevel,
			[]float64{2, 2, 2}, []float64{nan, 1, 3}, []float64{1 + 1, 1 + 0.5, 1 + 1.5}},
		{"stale value: ignored like a missing one", liveLevel,
			[]float64{2, 2, 2}, []float64{1, 3, -100}, []float64{1 + 0.5, 1 + 1.5, 1 + 1}},
		{"all fresh values 0: the ledger alone", liveLevel,
			[]float64{1, 3, 2}, []float64{0, 0, nan}, []float64{0.5, 1.5, 1}},
		{"counts, no live values: the ledger normalised", liveCount,
			[]float64{1, 2, 3}, []float64{nan, nan, nan}, []float64{0.5, 1, 1.5}},
		{"counts: ledger/mean + (count/mean - 1)", liveCount,
			[]float64{1, 2, 3}, []float64{1, 1, 4}, []float64{0.5 - 0.5, 1 - 0.5, 1.5 + 1}},
		{"counts, no handouts yet: their deviations", liveCount,
			[]float64{0, 0, 0}, []float64{2, 4, 0}, []float64{0, 1, -1}},
		{"counts, missing value: its ledger alone, the mean of the others", liveCount,
			[]float64{2, 2, 2}, []float64{1, 3, nan}, []float64{1 - 0.5, 1 + 0.5, 1}},
		{"counts, stale value: ignored like a missing one", liveCount,
			[]float64{2, 2, 2}, []float64{1, 3, -100}, []float64{1 - 0.5, 1 + 0.5, 1}},
		{"counts, all fresh values 0: the ledger alone", liveCount,
			[]float64{1, 3, 2}, []float64{0, 0, nan}, []float64{0.5, 1.5, 1}},
	}
	for _, tt := range tests {
		cands := liveCands(now, tt.ledger, tt.live)
		got, clients := scoreParts(cands, []int{0, 1, 2}, nowTicks(), now, nil, tt.kind, []float64{-1}, nil)
		if got[0] != -1 || !approx(got[1:], tt.want) || !approx(clients, []float64{0, 0, 0}) {
			t.Errorf("%s: BlendedScores = %v, want [-1 (kept)] + %v", tt.name, got, tt.want)
		}
	}
	// The second term counts handouts since the sample was read, not the
	// whole ledger: equal ledgers, but b got 2 since the poll.
	cands := liveCands(now, []float64{10, 10, 10}, []float64{1, 1, 1})
	tk := nowTicks()
	for i, l := range []float64{10, 8, 10} {
		s := *cands[i].Live.Sample()
		s.Ledger, s.LedgerTicks = l, tk
		cands[i].Live.Set(&s)
	}
	if got := BlendedScores(cands, []int{0, 1, 2}, tk, now, nil, nil); !approx(got, []float64{1, 1 + 3, 1}) {
		t.Errorf("handouts since the poll [0 2 0]: BlendedScores = %v, want [1 4 1]", got)
	}
	// A fresh sample with no value: the mean live term, its own handouts.
	s := *cands[1].Live.Sample()
	s.Missing = true
	cands[1].Live.Set(&s)
	if got := BlendedScores(cands, []int{0, 1, 2}, tk, now, nil, nil); !approx(got, []float64{1, 1 + 3, 1}) {
		t.Errorf("missing value: BlendedScores = %v, want [1 4 1]", got)
	}
	// BlendedScores covers only the candidates asked about, in their order.
	cands = liveCands(now, []float64{1, 2, 3}, []float64{1, 1, 4})
	if got := BlendedScores(cands, []int{2, 0}, nowTicks(), now, nil, nil); !approx(got, []float64{1.5 + 1.6, 0.5 + 0.4}) {
		t.Errorf("BlendedScores of [2 0] = %v", got)
	}
}

// TestLeastLoadedBurstSpreads is why the ledger is blended in: between two
// polls the live values do not move, and live load alone would send every
// answer to the pod that looked least loaded.
func TestLeastLoadedBurstSpreads(t *testing.T) {
	now := time.Now()
	cands := liveCands(now, []float64{0, 0}, []float64{1, 3})
	chain, err := Parse("least-loaded, first=1")
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{TTL: 5, Rand: rand.New(rand.NewPCG(1, 2))}
	var s Scratch
	firsts := [2]int{}
	for range 200 {
		out := chain.Pick(req, cands, []int{0, 1}, nil, &s)
		firsts[out[0]]++
	}
	if firsts[0] <= firsts[1] || firsts[1] < 20 {
		t.Errorf("200 answers between two polls (live 1 vs 3): first places %v; want most to the idler pod, and some (≥ 20) to the other", firsts)
	}
	// The busy pod never comes first while the live gap is wide and the
	// ledger even.
	cands = liveCands(now, []float64{1, 1, 1}, []float64{1, 50, 1})
	for range 100 {
		out, _ := chain.Explain(req, cands, []int{0, 1, 2})
		if cands[out[0]].Key == "b" {
			t.Fatalf("busy pod first: %v", out)
		}
	}
}

func TestCompilerLiveCells(t *testing.T) {
	c, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Live("q1", "ns/a"), c.Live("q1", "ns/b")
	other := c.Live("q2", "ns/a")
	if c.Live("q1", "ns/a") != a || a == other {
		t.Fatal("Live must return one cell per (query, key)")
	}
	if got := c.LiveQueries(); !slices.Equal(got, []string{"q1", "q2"}) {
		t.Errorf("LiveQueries = %v", got)
	}
	at := time.Now()
	c.Ledger("ns/a").Add(4)
	c.UpdateLive("q1", map[string]float64{"ns/a": 7, "ns/zz": 1}, at, at.Add(time.Second))
	if s := a.Sample(); s == nil || s.Missing || s.Value != 7 || !s.Fresh(at) || s.Fresh(at.Add(time.Second)) || math.Abs(s.Ledger-4) > 0.01 {
		t.Errorf("a: %+v, want 7, fresh for 1s, with the ledger (4) at the poll", s)
	}
	if s := b.Sample(); s == nil || !s.Missing || other.Sample() != nil {
		t.Errorf("a key missing from the poll: %+v, want Missing; another query's cell: %+v, want none", s, other.Sample())
	}
	// A later poll without a's Pod marks it missing.
	c.UpdateLive("q1", map[string]float64{"ns/b": 1}, at, at.Add(time.Second))
	if !a.Sample().Missing || b.Sample().Missing || b.Sample().Value != 1 {
		t.Error("a later poll did not replace the values")
	}
	// Cells nobody asks for in a build are swept; asked-for ones survive.
	c.Sweep()
	c.Live("q1", "ns/b")
	c.Sweep()
	if got := c.LiveQueries(); !slices.Equal(got, []string{"q1"}) {
		t.Errorf("after a sweep, LiveQueries = %v", got)
	}
	if c.Live("q1", "ns/b") != b {
		t.Error("a cell asked for in every build was replaced")
	}
	var nilLive *Live
	if nilLive.Sample() != nil || (*Sample)(nil).Fresh(at) {
		t.Error("a nil Live or Sample must read as no value")
	}
}

func TestChainUsesLoad(t *testing.T) {
	for spec, want := range map[string]bool{"least-loaded, first=1": true, "ordered": false, "sticky, first=2": false} {
		c, err := Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		if c.UsesLoad() != want {
			t.Errorf("%q: UsesLoad = %v", spec, !want)
		}
	}
}

// TestShareWeights checks the integral term of BlendedScores: each polled sample
// moves the share weights against the live values' deviation from their
// mean, once per sample, within bounds, keeping their product 1; and
// between polls least-loaded hands out in proportion to the weights.
func TestShareWeights(t *testing.T) {
	now := time.Now()
	cands := liveCands(now, []float64{0, 0, 0}, []float64{1, 1, 1})
	in := []int{0, 1, 2}
	poll := func(values ...float64) {
		for i, v := range values {
			s := &Sample{Value: v, At: now, Until: now.Add(time.Second)}
			if math.IsNaN(v) {
				s.Missing = true
			}
			cands[i].Live.Set(s)
		}
		BlendedScores(cands, in, nowTicks(), now, nil, nil)
	}
	weights := func() []float64 {
		return []float64{cands[0].Live.Weight(), cands[1].Live.Weight(), cands[2].Live.Weight()}
	}
	poll(4, 1, 1) // mean 2: rel 2, 0.5, 0.5
	want := []float64{math.Exp(-shareGain), math.Exp(shareGain / 2), math.Exp(shareGain / 2)}
	if got := weights(); !approx(got, want) {
		t.Fatalf("after one poll of [4 1 1]: weights %v, want %v", got, want)
	}
	BlendedScores(cands, in, nowTicks(), now, nil, nil)
	if got := weights(); !approx(got, want) {
		t.Fatalf("the same sample scored again moved the weights: %v, want %v", got, want)
	}
	// A missing value keeps its weight; the others still move.
	poll(math.NaN(), 1, 3) // mean 2 over b and c
	want = []float64{want[0], want[1] * math.Exp(shareGain/2), want[2] * math.Exp(-shareGain/2)}
	if got := weights(); !approx(got, want) {
		t.Fatalf("after [missing 1 3]: weights %v, want %v", got, want)
	}
	// A pod that stays busy sinks to the floor, the others rise; the
	// product stays 1 until a bound is hit.
	for range 200 {
		poll(100, 1, 1)
	}
	if got := weights(); got[0] != 1/shareLimit || got[1] > shareLimit {
		t.Fatalf("after 200 polls of [100 1 1]: weights %v, want a at 1/%v", got, shareLimit)
	}

	// Between polls, with equal live values, first places follow the
	// weights 2:1:1.
	cands = liveCands(now, []float64{0, 0, 0}, []float64{1, 1, 1})
	for i, w := range []float64{2, 1, 1} {
		cands[i].Live.share.Store(&share{from: cands[i].Live.Sample(), weight: w})
	}
	chain, err := Parse("least-loaded, first=1")
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{TTL: 1, Rand: rand.New(rand.NewPCG(3, 4))}
	var s Scratch
	firsts := [3]int{}
	for range 400 {
		firsts[chain.Pick(req, cands, in, nil, &s)[0]]++
	}
	if firsts[0] < 180 || firsts[0] > 220 || firsts[1] < 80 || firsts[2] < 80 {
		t.Errorf("400 answers at weights 2:1:1 and equal load: first places %v, want about [200 100 100]", firsts)
	}
}
