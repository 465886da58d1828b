package policy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// candidates returns n endpoints with ledger entries, keys "ep-i".
func candidates(n int) []Endpoint {
	cands := make([]Endpoint, n)
	for i := range cands {
		cands[i] = Endpoint{Key: fmt.Sprintf("ns/ep-%d", i), Ready: true, Serving: true, Weight: 1, Ledger: new(Ledger)}
	}
	return cands
}

func indices(n int) []int {
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	return in
}

func mustChain(t testing.TB, spec string) *Chain {
	t.Helper()
	c, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func seeded(seed uint64) *Request {
	return &Request{Client: netip.MustParseAddr("10.0.0.1"), TTL: 5, Rand: rand.New(rand.NewPCG(seed, seed))}
}

// TestChainProperties checks, for every step and some chains, over many
// seeded runs: the answer is a subset of the candidates offered, has no
// duplicates, is never empty while candidates exist, respects first=N, and
// leaves the input untouched.
func TestChainProperties(t *testing.T) {
	specs := []string{"ordered", "round-robin", "random", "weighted", "least-loaded", "sticky", "drain",
		"first=1", "ttl=30", "least-loaded, first=2", "drain, weighted, first=3", "sticky=60, first=1", "random, round-robin, sticky"}
	for _, spec := range specs {
		c := mustChain(t, spec)
		wantMax := 1 << 30
		if _, n, ok := strings.Cut(spec, "first="); ok {
			fmt.Sscanf(n, "%d", &wantMax)
		}
		var s Scratch
		for seed := range uint64(200) {
			n := 1 + int(seed%13)
			cands := candidates(n)
			cands[int(seed)%n].Terminating = seed%3 == 0
			in := indices(n)
			if seed%4 == 0 && n > 2 {
				in = in[1:] // the step sees only part of the candidates
			}
			inCopy := slices.Clone(in)
			req := seeded(seed)
			req.Client = netip.AddrFrom4([4]byte{10, 0, byte(seed >> 8), byte(seed)})
			out := c.Pick(req, cands, in, nil, &s)
			if !slices.Equal(in, inCopy) {
				t.Fatalf("%s: input changed %v → %v", spec, inCopy, in)
			}
			if len(out) == 0 {
				t.Fatalf("%s seed %d: empty answer from %d candidates", spec, seed, len(in))
			}
			if len(out) > wantMax {
				t.Fatalf("%s: %d answers, first=%d", spec, len(out), wantMax)
			}
			seen := map[int]bool{}
			for _, i := range out {
				if !slices.Contains(in, i) || seen[i] {
					t.Fatalf("%s seed %d: answer %v is not a subset of %v without duplicates", spec, seed, out, in)
				}
				seen[i] = true
			}
		}
	}
}

func TestRoundRobinRotates(t *testing.T) {
	c := mustChain(t, "round-robin")
	var s Scratch
	cands := candidates(3)
	var firsts []int
	for range 6 {
		firsts = append(firsts, c.Pick(seeded(1), cands, indices(3), nil, &s)[0])
	}
	if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(firsts, want) {
		t.Errorf("first positions %v, want %v", firsts, want)
	}
}

func TestRandomIsUniform(t *testing.T) {
	c := mustChain(t, "random")
	var s Scratch
	cands := candidates(4)
	req := seeded(7)
	counts := make([]int, 4)
	for range 40000 {
		counts[c.Pick(req, cands, indices(4), nil, &s)[0]]++
	}
	for i, n := range counts {
		if n < 9500 || n > 10500 {
			t.Errorf("endpoint %d first %d times of 40000, want about 10000", i, n)
		}
	}
}

func TestWeightedFollowsWeights(t *testing.T) {
	c := mustChain(t, "weighted")
	var s Scratch
	cands := candidates(3)
	cands[0].Weight, cands[1].Weight, cands[2].Weight = 3, 1, 0
	req := seeded(3)
	counts := make([]int, 3)
	for range 40000 {
		out := c.Pick(req, cands, indices(3), nil, &s)
		counts[out[0]]++
		if out[2] != 2 {
			t.Fatalf("weight-0 endpoint not last: %v", out)
		}
	}
	if r := float64(counts[0]) / float64(counts[1]); r < 2.8 || r > 3.2 {
		t.Errorf("first-place ratio of weights 3:1 is %.2f (%v)", r, counts)
	}
}

func TestLeastLoadedPrefersLessLoaded(t *testing.T) {
	c := mustChain(t, "least-loaded")
	var s Scratch
	cands := candidates(2)
	cands[1].Ledger.Add(1000)
	for seed := range uint64(50) {
		out, _ := c.Explain(seeded(seed), cands, indices(2))
		if out[0] != 0 {
			t.Fatalf("seed %d: the loaded endpoint came first: %v", seed, out)
		}
	}
	// Pick records its handouts: with the ledger alone, repeated picks
	// spread over every endpoint.
	cands = candidates(5)
	req := seeded(11)
	counts := make([]int, 5)
	for range 500 {
		counts[c.Pick(req, cands, indices(5), nil, &s)[0]]++
	}
	for i, n := range counts {
		if n < 80 || n > 120 {
			t.Errorf("endpoint %d first %d of 500 times; the ledger should keep it near 100 (%v)", i, n, counts)
		}
	}
}

func TestDrain(t *testing.T) {
	c := mustChain(t, "drain")
	if !c.OfferTerminating() {
		t.Error("a chain with drain does not ask for terminating endpoints")
	}
	var s Scratch
	cands := candidates(3)
	cands[0].Terminating = true
	if out := c.Pick(seeded(1), cands, indices(3), nil, &s); !slices.Equal(out, []int{1, 2}) {
		t.Errorf("with others left: %v, want [1 2]", out)
	}
	cands[1].Terminating, cands[2].Terminating = true, true
	cands[2].Serving = false
	if out := c.Pick(seeded(1), cands, indices(3), nil, &s); !slices.Equal(out, []int{0, 1}) {
		t.Errorf("only terminating left: %v, want the serving ones [0 1]", out)
	}
}

func TestTTLStep(t *testing.T) {
	if c := mustChain(t, "least-loaded, ttl=30s"); c.TTL() != 30 {
		t.Errorf("TTL %d, want 30", c.TTL())
	}
	for _, bad := range []string{"ttl=0", "ttl=x", "ttl=1.5s", "ttl=100000", "first=0", "first=-1", "sticky=0", "random=1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

// TestRendezvousStability adds and removes one endpoint of ten and checks
// that only the clients that must move do: about 1/n.
func TestRendezvousStability(t *testing.T) {
	const clients = 20000
	first := func(cands []Endpoint) []string {
		c := mustChain(t, "sticky=1")
		var s Scratch
		out := make([]string, clients)
		for i := range clients {
			req := &Request{Client: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
			out[i] = cands[c.Pick(req, cands, indices(len(cands)), nil, &s)[0]].Key
		}
		return out
	}
	ten := candidates(10)
	base := first(ten)
	added := first(candidates(11))
	removed := first(slices.Delete(slices.Clone(ten), 3, 4))
	movedAdd, movedRemove := 0, 0
	perEndpoint := map[string]int{}
	for i := range clients {
		perEndpoint[base[i]]++
		if added[i] != base[i] {
			movedAdd++
			if added[i] != "ns/ep-10" {
				t.Fatalf("client %d moved from %s to %s, not to the new endpoint", i, base[i], added[i])
			}
		}
		if removed[i] != base[i] {
			movedRemove++
			if base[i] != "ns/ep-3" {
				t.Fatalf("client %d moved off %s, which was not removed", i, base[i])
			}
		}
	}
	t.Logf("adding 1 to 10 moved %.1f%% of clients, removing 1 moved %.1f%%", 100*float64(movedAdd)/clients, 100*float64(movedRemove)/clients)
	if f := float64(movedAdd) / clients; f < 0.07 || f > 0.11 {
		t.Errorf("adding one endpoint moved %.3f of clients, want about 1/11", f)
	}
	for k, n := range perEndpoint {
		if n < clients/10*8/10 || n > clients/10*12/10 {
			t.Errorf("%s has %d of %d clients: rendezvous hashing is uneven", k, n, clients)
		}
	}
}

func TestStickyKeepsAssignmentUntilTimeout(t *testing.T) {
	c := mustChain(t, "sticky=1")
	var s Scratch
	cands := candidates(10)
	req := &Request{Client: netip.MustParseAddr("192.0.2.7")}
	got := c.Pick(req, cands, indices(10), nil, &s)[0]
	// A new endpoint that would win the hash does not take the client
	// while the assignment lasts.
	more := candidates(40)
	for range 3 {
		if again := c.Pick(req, more, indices(40), nil, &s)[0]; again != got {
			t.Fatalf("assignment moved from %d to %d within its timeout", got, again)
		}
	}
	// An assignment whose endpoint left moves.
	without := slices.Delete(indices(10), got, got+1)
	if moved := c.Pick(req, cands, without, nil, &s)[0]; moved == got {
		t.Fatal("kept an endpoint that is no longer a candidate")
	}
	time.Sleep(1100 * time.Millisecond)
	fresh := c.Pick(req, more, indices(40), nil, &s)[0]
	want := 0
	best := uint64(0)
	for i := range more {
		if h := Rendezvous(req.Client, more[i].Key); i == 0 || h > best {
			want, best = i, h
		}
	}
	if fresh != want {
		t.Errorf("after the timeout: endpoint %d, want the rendezvous winner %d", fresh, want)
	}
}

func TestCompilerKeepsStateAndFallsBack(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	a, err := comp.Compile(ServicePolicy{Service: "n/a", Annotation: "round-robin"})
	if err != nil {
		t.Fatal(err)
	}
	comp.Sweep()
	if b, _ := comp.Compile(ServicePolicy{Service: "n/a", Annotation: "round-robin"}); b != a {
		t.Error("the same Service and policy got a new chain: its state would be lost")
	}
	comp.Sweep()
	comp.Sweep()
	if b, _ := comp.Compile(ServicePolicy{Service: "n/a", Annotation: "round-robin"}); b == a {
		t.Error("a chain no build asked for survived two sweeps")
	}
	def, err := comp.Compile(ServicePolicy{Service: "n/b", Annotation: "fastest"})
	if err == nil || def == nil || def.String() != "ordered" || !strings.Contains(err.Error(), "fastest") {
		t.Errorf("bad annotation: chain %v, err %v; want the default and an error naming it", def, err)
	}
	aff, err := comp.Compile(ServicePolicy{Service: "n/c", Annotation: "least-loaded, first=2", AffinityTimeout: 60 * time.Second})
	if err != nil || aff.String() != "least-loaded, sticky=60, first=2" {
		t.Errorf("session affinity: chain %q, err %v", aff, err)
	}
	if !aff.UsesClient() {
		t.Error("a sticky chain does not say it uses the client")
	}
	l := comp.Ledger("n/pod")
	if comp.Ledger("n/pod") != l {
		t.Error("the ledger entry changed between calls")
	}
}

func TestLedgerDecays(t *testing.T) {
	var l Ledger
	l.Add(10)
	if v := l.Value(); v < 9.9 || v > 10 {
		t.Fatalf("value %v right after adding 10", v)
	}
	oneTau := uint32(ledgerTimeConstant / tick)
	if v := decay(10, 5, 5+oneTau); v < 3.6 || v > 3.8 {
		t.Errorf("after one time constant: %v, want 10/e ≈ 3.68", v)
	}
	if v := decay(10, 5, 4); v != 10 {
		t.Errorf("a timestamp from the future decayed the value to %v", v)
	}
}

func TestHandoutMetrics(t *testing.T) {
	comp, err := NewCompiler("ordered")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	comp.RegisterMetrics(reg, true)
	c, _ := comp.Compile(ServicePolicy{Service: "n/a"})
	cands := candidates(2)
	for i := range cands {
		cands[i].Handouts = comp.EndpointCounter("n/a", cands[i].Key)
	}
	var s Scratch
	for range 3 {
		c.Pick(seeded(1), cands, indices(2), nil, &s)
	}
	c.Pick(seeded(1), cands, indices(1), nil, &s)
	if got := testutil.ToFloat64(comp.handouts.WithLabelValues("n/a")); got != 4 {
		t.Errorf("handouts %v, want 4", got)
	}
	if a, b := testutil.ToFloat64(comp.perEndpoint.WithLabelValues("n/a", "ns/ep-0")), testutil.ToFloat64(comp.perEndpoint.WithLabelValues("n/a", "ns/ep-1")); a != 4 || b != 3 {
		t.Errorf("per-endpoint handouts %v and %v, want 4 and 3", a, b)
	}
	comp.Sweep()
	comp.Sweep() // n/a was not compiled since: its series go
	if n := testutil.CollectAndCount(comp.handouts) + testutil.CollectAndCount(comp.perEndpoint); n != 0 {
		t.Errorf("%d handout series left for a Service that is gone", n)
	}
}

// TestStickyDoesNotFlapAcrossFamilies: a client assigned to an IPv4-only
// endpoint asks for AAAA (that endpoint is not a candidate there); its A
// answers must keep the endpoint.
func TestStickyDoesNotFlapAcrossFamilies(t *testing.T) {
	c := mustChain(t, "sticky")
	var s Scratch
	cands := candidates(10)
	for client := range 200 {
		req := &Request{Client: netip.AddrFrom4([4]byte{10, 7, 0, byte(client)})}
		a := c.Pick(req, cands, indices(10), nil, &s)[0]
		v6 := slices.DeleteFunc(indices(10), func(i int) bool { return i == a }) // a has no IPv6
		if aaaa := c.Pick(req, cands, v6, nil, &s)[0]; aaaa == a {
			t.Fatal("AAAA answered with an endpoint that is not a candidate")
		}
		if again := c.Pick(req, cands, indices(10), nil, &s)[0]; again != a {
			t.Fatalf("client %d: A gave %d, then after an AAAA query %d", client, a, again)
		}
	}
}

func TestExplainLeavesStateAlone(t *testing.T) {
	var s Scratch
	cands := candidates(4)
	rr := mustChain(t, "round-robin")
	for range 5 {
		rr.Explain(seeded(1), cands, indices(4))
	}
	if first := rr.Pick(seeded(1), cands, indices(4), nil, &s)[0]; first != 0 {
		t.Errorf("explain advanced round-robin: first pick %d", first)
	}
	st := mustChain(t, "sticky")
	req := &Request{Client: netip.MustParseAddr("10.9.9.9")}
	st.Explain(req, cands, indices(2)) // would assign among the first two only
	want := rendezvousWinner(req.Client, cands, indices(4))
	if got := st.Pick(req, cands, indices(4), nil, &s)[0]; got != want {
		t.Errorf("explain stored an assignment: got %d, want the rendezvous winner %d", got, want)
	}
}

// TestSeedNewLevelsAJoiningPod: a Pod that joins a Service whose Pods have
// each counted 30 handouts starts level with them, so least-loaded gives
// it its share from the first answer on, not every answer it is drawn into
// until it catches up.
func TestSeedNewLevelsAJoiningPod(t *testing.T) {
	cands := candidates(4)
	for i := range 3 {
		cands[i].Ledger.Add(30)
	}
	seedNew(cands)
	if v := cands[3].Ledger.Value(); math.Abs(v-30) > 0.5 {
		t.Fatalf("joining Pod's ledger %v, want its peers' mean 30", v)
	}
	seedNew(cands) // once per entry
	if v := cands[3].Ledger.Value(); math.Abs(v-30) > 0.5 {
		t.Fatalf("seeded twice: ledger %v, want 30", v)
	}
	chain, err := Parse("least-loaded, first=1")
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{TTL: 1, Rand: rand.New(rand.NewPCG(5, 6))}
	var s Scratch
	in := []int{0, 1, 2, 3}
	newFirst := 0
	for range 40 {
		if chain.Pick(req, cands, in, nil, &s)[0] == 3 {
			newFirst++
		}
	}
	if newFirst > 15 {
		t.Errorf("the joining Pod came first in %d of the first 40 answers, want about 10", newFirst)
	}
	// Nothing counted anywhere: nothing to seed.
	fresh := candidates(2)
	seedNew(fresh)
	if !fresh[0].Ledger.fresh() || !fresh[1].Ledger.fresh() {
		t.Error("seedNew seeded a Service with no counted handouts")
	}
}

// TestLeastLoadedFirstPlaceFollowsTheLedger: on the ledger alone, first
// places stay within one handout of each other, not within the spread of a
// random draw: what is left to balance when caches share answers.
func TestLeastLoadedFirstPlaceFollowsTheLedger(t *testing.T) {
	c := mustChain(t, "least-loaded, first=1")
	var s Scratch
	cands := candidates(10)
	req := seeded(7)
	req.TTL = 1
	req.Client = netip.Addr{} // the ledger alone: no holds, no repeats
	counts := make([]int, 10)
	for k := range 1000 {
		counts[c.Pick(req, cands, indices(10), nil, &s)[0]]++
		if spread := slices.Max(counts) - slices.Min(counts); spread > 1 {
			t.Fatalf("after %d answers first places %v: spread %d, want ≤ 1", k+1, counts, spread)
		}
	}
}
