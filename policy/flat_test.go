package policy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestWantedPlacesMatchTheWholeOrder: a chain ending in first=N has each
// step stop at the places it is wanted for; the deterministic steps still
// answer the first N places of their whole order, and every step answers
// N distinct candidates, over few candidates and many.
func TestWantedPlacesMatchTheWholeOrder(t *testing.T) {
	for _, n := range []int{5, 1000} {
		cands := candidates(n)
		cands[1].Terminating, cands[3].Terminating = true, true
		in := indices(n)
		for _, step := range []string{"ordered", "round-robin", "drain", "sticky", "ttl=30", "random", "weighted", "least-loaded"} {
			for _, keep := range []int{1, 3} {
				whole, cut := mustChain(t, step), mustChain(t, fmt.Sprintf("%s, first=%d", step, keep))
				var s Scratch
				for q := range 20 {
					req := seeded(uint64(q))
					req.Client = clientAddr(q)
					want := whole.Pick(req, cands, in, nil, &s)[:keep]
					req = seeded(uint64(q))
					req.Client = clientAddr(q)
					got := cut.Pick(req, cands, in, nil, &s)
					if len(got) != keep || len(compactSorted(got)) != keep {
						t.Fatalf("%q over %d: %v, want %d distinct places", cut, n, got, keep)
					}
					switch step {
					case "ordered", "round-robin", "drain", "sticky", "ttl=30":
						if !slices.Equal(got, want) {
							t.Fatalf("%q over %d, question %d: %v; the whole order begins %v", cut, n, q, got, want)
						}
					}
				}
			}
		}
	}
}

func compactSorted(s []int) []int { return slices.Compact(slices.Sorted(slices.Values(s))) }

// TestWantIsSetPerStep: a step is wanted for the places of the steps after
// it that keep a prefix of their input, and whole before one that reorders.
func TestWantIsSetPerStep(t *testing.T) {
	for spec, want := range map[string][]int{
		"least-loaded":                          {0},
		"least-loaded, first=2":                 {2, 0},
		"least-loaded, ttl=5, ordered, first=3": {3, 3, 3, 0},
		"drain, least-loaded, first=1":          {0, 1, 0},
		"round-robin, first=4, first=2":         {2, 2, 0},
		"first=2, least-loaded":                 {0, 0},
	} {
		if got := mustChain(t, spec).wants; !slices.Equal(got, want) {
			t.Errorf("%q: wants %v, want %v", spec, got, want)
		}
	}
}

// TestLeastLoadedSampledStaysLevel: over many candidates, least-loaded,
// first=1 ranks a sample, yet keeps the handouts level: after 40 answers
// per endpoint the most counted is within two handouts of the mean.
// Answers drawn at random (what a sample that stopped seeking the least
// loaded would be) spread as a Poisson law: the most counted of 1,000
// endpoints near 1.6 times the mean.
func TestLeastLoadedSampledStaysLevel(t *testing.T) {
	for _, n := range []int{1000, 10000} {
		chain := mustChain(t, "least-loaded, first=1")
		cands := candidates(n)
		in := indices(n)
		req := &Request{TTL: 1, Rand: rand.New(rand.NewPCG(1, uint64(n)))}
		var s Scratch
		const perEndpoint = 40
		for range perEndpoint * n {
			chain.Pick(req, cands, in, nil, &s)
		}
		var sum, most float64
		for i := range cands {
			v := cands[i].Ledger.Value()
			sum += v
			most = max(most, v)
		}
		mean := sum / float64(n)
		t.Logf("%d endpoints, %d answers each: the most counted has %.2f handouts, the mean %.2f", n, perEndpoint, most, mean)
		if most > mean+2 {
			t.Errorf("%d endpoints, %d answers each: the most counted has %.1f handouts, the mean %.1f; want within 2", n, perEndpoint, most, mean)
		}
	}
}

// TestLeastLoadedSampledAvoidsHeldEndpoints: over many candidates, new
// clients whose answers last an hour are spread by the holds (and the
// ledger): no endpoint gets more than two of them while others have none.
func TestLeastLoadedSampledAvoidsHeldEndpoints(t *testing.T) {
	const n, clients = 1000, 800
	chain := mustChain(t, "least-loaded, first=1")
	cands := candidates(n)
	in := indices(n)
	var s Scratch
	r := rand.New(rand.NewPCG(3, 4))
	for c := range clients {
		chain.Pick(&Request{Client: clientAddr(c), TTL: 3600, Rand: r}, cands, in, nil, &s)
	}
	counts := clientCounts(cands)
	if most := slices.Max(counts); most > 2 {
		t.Errorf("%d clients over %d endpoints: one endpoint holds %d", clients, n, most)
	}
	chain.steps[0].(Upkeeper).Close()
}

// TestLeastLoadedSampledFoldsTheServiceMean: a sampled ranking folds each
// poll into the share weights of every candidate, against the mean of
// them all: what a ranking of every candidate folds.
func TestLeastLoadedSampledFoldsTheServiceMean(t *testing.T) {
	const n = 200
	now := time.Now()
	ledger, live := make([]float64, n), make([]float64, n)
	for i := range live {
		live[i] = float64(1 + 2*(i%2)) // 1 and 3: the mean is 2
	}
	cands := liveCands(now, ledger, live)
	for i := range cands {
		cands[i].Live.share.Store(nil) // nothing folded yet
	}
	var s Scratch
	mustChain(t, "least-loaded, first=1").Pick(&Request{TTL: 1}, cands, indices(n), nil, &s)
	for i := range cands {
		want := math.Exp(-shareGain * (live[i]/2 - 1))
		if got := cands[i].Live.Weight(); math.Abs(got-want) > 1e-9 {
			t.Fatalf("candidate %d (live %v): share weight %v, want %v", i, live[i], got, want)
		}
	}
}

// TestDrawnPlacesFollowTheirLaw: random and weighted, asked for one place
// of many, draw it with the probability their whole order gives it.
func TestDrawnPlacesFollowTheirLaw(t *testing.T) {
	const n, draws = 1000, 100000
	var s Scratch
	cands, in := candidates(n), indices(n)
	req := &Request{Rand: rand.New(rand.NewPCG(5, 6))}
	counts := make([]int, n)
	random := mustChain(t, "random, first=1")
	for range draws {
		counts[random.Pick(req, cands, in, nil, &s)[0]]++
	}
	if lo, hi := slices.Min(counts), slices.Max(counts); lo < 55 || hi > 145 {
		t.Errorf("random, first=1: each of %d endpoints first %d..%d times of %d, want about 100", n, lo, hi, draws)
	}
	// weighted: endpoint 0 weighs 5, 1 weighs 0, the others 1; then 2
	// becomes the heaviest, above the bound the step learnt.
	cands[0].Weight, cands[1].Weight = 5, 0
	weighted := mustChain(t, "weighted, first=1")
	for round, heavy := range []int{0, 2} {
		if round == 1 {
			cands[0].Weight, cands[2].Weight = 1, 8
		}
		clear(counts)
		for range draws {
			counts[weighted.Pick(req, cands, in, nil, &s)[0]]++
		}
		total := float64(n - 2 + int(cands[heavy].Weight))
		if want := draws * float64(cands[heavy].Weight) / total; math.Abs(float64(counts[heavy])-want) > 0.08*want {
			t.Errorf("weighted, first=1, round %d: the heaviest first %d times of %d, want about %.0f", round, counts[heavy], draws, want)
		}
		if counts[1] != 0 {
			t.Errorf("weighted, first=1: the weight-0 endpoint came first %d times", counts[1])
		}
	}
}

// TestStickyFindsItsEndpointWhereItWas: a client's endpoint is found at
// the position it was last found at, and searched for when the candidates
// moved.
func TestStickyFindsItsEndpointWhereItWas(t *testing.T) {
	c := mustChain(t, "sticky, first=1")
	var s Scratch
	cands := candidates(100)
	req := &Request{Client: netip.MustParseAddr("192.0.2.9")}
	got := cands[c.Pick(req, cands, indices(100), nil, &s)[0]].Key
	shifted := append([]int{99}, indices(99)...)
	for range 2 {
		if again := cands[c.Pick(req, cands, shifted, nil, &s)[0]].Key; again != got {
			t.Fatalf("candidates reordered: the client moved from %s to %s", got, again)
		}
	}
}

// TestDrainHandsOnWhatItKeepsWhole: drain before a step that samples
// hands a list with nothing to drop on as it is, and still keeps the
// terminating endpoints of another list out of the answer.
func TestDrainHandsOnWhatItKeepsWhole(t *testing.T) {
	const n = 1000
	c := mustChain(t, "drain, least-loaded, first=1")
	var s Scratch
	clean, in := candidates(n), indices(n)
	for range 3 {
		if out := c.Pick(seeded(1), clean, in, nil, &s); len(out) != 1 {
			t.Fatalf("answer %v, want one place", out)
		}
	}
	if d := c.steps[0].(*drain); !d.passes(clean, in) {
		t.Error("drain does not hand on a list with no terminating endpoint")
	}
	mixed := candidates(n)
	for i := range mixed {
		mixed[i].Terminating = i%10 != 0
	}
	in2 := indices(n)
	for q := range 200 {
		if out := c.Pick(seeded(uint64(q)), mixed, in2, nil, &s); len(out) != 1 || mixed[out[0]].Terminating {
			t.Fatalf("question %d: answer %v names a terminating endpoint", q, out)
		}
	}
	// Another question's scratch never reaches a later step as if it
	// were a snapshot's list.
	r := mustChain(t, "random, drain, least-loaded, first=1")
	for q := range 50 {
		if out := r.Pick(seeded(uint64(q)), mixed, in2, nil, &s); len(out) != 1 || mixed[out[0]].Terminating {
			t.Fatalf("question %d: answer %v names a terminating endpoint", q, out)
		}
	}
}

// TestLeastLoadedSampledFollowsLiveLoad: over many candidates, the first
// places of a sampled ranking go to the pods whose polled load is low,
// as the blend of ledger and live load says.
func TestLeastLoadedSampledFollowsLiveLoad(t *testing.T) {
	const n, answers = 1000, 300
	now := time.Now()
	ledger, live := make([]float64, n), make([]float64, n)
	for i := range live {
		live[i] = 1 + 9*float64(i%2) // odd pods are busy
	}
	cands := liveCands(now, ledger, live)
	chain := mustChain(t, "least-loaded, first=1")
	req := &Request{TTL: 1, Rand: rand.New(rand.NewPCG(7, 8))}
	var s Scratch
	busy := 0
	for range answers {
		busy += chain.Pick(req, cands, indices(n), nil, &s)[0] % 2
	}
	if busy > answers/20 {
		t.Errorf("%d of %d first places went to pods ten times as busy as the others", busy, answers)
	}
}
