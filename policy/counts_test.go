package policy

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestParseLeastLoadedCount(t *testing.T) {
	for spec, ok := range map[string]bool{
		"least-loaded=count, first=1": true,
		"least-loaded, first=1":       true,
		"least-loaded=counts":         false,
		"least-loaded=1":              false,
	} {
		if _, err := Parse(spec); (err == nil) != ok {
			t.Errorf("Parse(%q): error %v, want ok %v", spec, err, ok)
		}
	}
}

// replicaCands gives each of replicas hdns replicas its own ledgers for
// the same n endpoints, at its own phase of a rotation (replica r's
// endpoint i at 10 + ((i+3r) mod n)/n handouts), and the same live values
// 100+i/2, freshly polled: what replicas behind caches that draw one of them
// per question hold between two polls.
func replicaCands(now time.Time, replicas, n int) [][]Endpoint {
	tk := nowTicks()
	out := make([][]Endpoint, replicas)
	for r := range out {
		ledger, live := make([]float64, n), make([]float64, n)
		for i := range n {
			ledger[i] = 10 + float64((i+3*r)%n)/float64(n)
			live[i] = 100 + float64(i)/2
		}
		out[r] = liveCands(now, ledger, live)
		for i := range out[r] {
			s := *out[r][i].Live.Sample()
			s.Ledger, s.LedgerTicks = out[r][i].Ledger.valueAt(tk), tk
			out[r][i].Live.Set(&s)
		}
	}
	return out
}

// TestCountReplicasDoNotHerd is why counts keep the ledger's weight: three
// replicas that read the same live values and each answer half a rotation
// between two polls. Read as levels, every replica starts the poll from
// the same order and the five least loaded endpoints get all fifteen
// answers; read as counts, each replica keeps its own rotation, which the
// small differences between the counts (±2%, against a ledger step of
// about 10%) only tilt.
func TestCountReplicasDoNotHerd(t *testing.T) {
	now := time.Now()
	const replicas, n, each = 3, 10, 5
	firsts := func(spec string) []int {
		got := make([]int, n)
		for r, cands := range replicaCands(now, replicas, n) {
			for i, f := range firstPlaces(t, spec, cands, indices(n), each, uint64(r)) {
				got[i] += f
			}
		}
		return got
	}
	level := firsts("least-loaded, first=1")
	if !slices.Equal(level, []int{3, 3, 3, 3, 3, 0, 0, 0, 0, 0}) {
		t.Errorf("levels: first places %v, want the herd [3 3 3 3 3 0 0 0 0 0] this test contrasts counts with", level)
	}
	count := firsts("least-loaded=count, first=1")
	answered := 0
	for _, c := range count {
		if c > 0 {
			answered++
		}
	}
	if answered < 8 {
		t.Errorf("counts: first places %v, want at least 8 of the %d endpoints answered first", count, n)
	}
}

// TestCountSteers: one replica, equal ledgers, one endpoint counted 20%
// over the mean and the other 20% under: the ledger settles 40% of its
// mean apart, so that the busier one gets about 40 of 100 first places.
func TestCountSteers(t *testing.T) {
	cands := liveCands(time.Now(), []float64{0, 0}, []float64{120, 80})
	firsts := firstPlaces(t, "least-loaded=count, first=1", cands, []int{0, 1}, 100, 5)
	if firsts[0] < 35 || firsts[0] > 45 {
		t.Errorf("100 answers, counts 120 vs 80: first places %v, want about [40 60]", firsts)
	}
}

// firstPlaces counts, per candidate, the first places of picks answers of
// the policy spec to one client without an address (no holds), drawing
// from a generator seeded with seed.
func firstPlaces(t *testing.T, spec string, cands []Endpoint, in []int, picks int, seed uint64) []int {
	t.Helper()
	chain, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{TTL: 1, Rand: rand.New(rand.NewPCG(seed, 7))}
	var s Scratch
	firsts := make([]int, len(cands))
	for range picks {
		firsts[chain.Pick(req, cands, in, nil, &s)[0]]++
	}
	return firsts
}
