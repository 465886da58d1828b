// Package policy chooses which endpoints of a headless Service an answer
// names, and in which order.
//
// A policy is a chain of steps. Each step comes from a Builder registered by
// name; the builder declares its steps' Traits, parses and validates the
// step's own arguments once, when a snapshot is built, and returns a Step
// that runs on every query. Steps are immutable after Build and are shared
// by every goroutine serving queries.
//
// The package owns everything a choice depends on: the meaning of a
// Service's policy annotations (policy, weights, load query, session
// affinity), the Chains compiled from them, and the per-endpoint state
// that outlives a snapshot (handout ledger, live load cells, per-endpoint
// counters), which the Compiler hands out (CompileService, Bind) and
// sweeps. It knows endpoints only by the identities Bind is given: it must
// not import zone (the snapshot and its records), server (the wire) or
// loadsource (which writes live load through Compiler.UpdateLive).
package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint is what a step may know about one candidate. Bind makes it once
// per snapshot and it never changes afterwards (what Ledger and Live point
// to is shared and atomic). Every endpoint of every headless Service has
// one, so it holds only what steps read, in 64 bytes; the zone keeps the
// endpoint's addresses and names in its own records, which steps never
// read.
type Endpoint struct {
	// Key identifies the endpoint the same way in every replica and
	// snapshot: its Pod's namespace/name, else its first address.
	Key string
	// Ledger is the endpoint's handout ledger entry; never nil in a built
	// snapshot.
	Ledger *Ledger
	// Live is the endpoint's live load under its Service's load query;
	// nil when no load source is configured, the chain reads no load, or
	// the endpoint is not a Pod.
	Live *Live
	// Handouts counts the endpoint's places in answers; nil unless
	// per-endpoint metrics are on.
	Handouts *Handouts
	// Weight is the static weight for the weighted step (1 unless the
	// Service's hdns.dev/weights annotation says otherwise; ≤ 0: last).
	Weight float32
	// Hints are the endpoint's EndpointSlice hints, interned; NoHints
	// without.
	Hints HintSet
	// Node and Zone are where the endpoint runs (its EndpointSlice's
	// nodeName and zone), interned; NoPlace when unknown.
	Node, Zone  Place
	Ready       bool
	Serving     bool
	Terminating bool
}

// Handouts is an endpoint's per-endpoint handout counter.
type Handouts struct{ prometheus.Counter }

// Request describes the query a choice is made for.
type Request struct {
	// Qtype is the DNS type asked for (A, AAAA, SRV...).
	Qtype uint16
	// Client identifies the asker: the EDNS Client Subnet address when
	// present, else the source address.
	Client netip.Addr
	// Node and Zone are where the client runs, NoPlace when unknown. The
	// server sets them only for chains whose traits include
	// ReadsLocation, so that other questions do not pay for locating.
	Node, Zone Place
	// TTL is the TTL the answer will carry; handouts are weighted by it.
	TTL uint32
	// Rand, when set, is the randomness steps draw from (tests seed it);
	// nil draws from the runtime's lock-free generator.
	Rand *rand.Rand
	// DryRun asks steps to leave their state alone (sticky assignments,
	// round-robin counters): the choice is only being explained.
	DryRun bool

	// want is how many leading places of the running step's answer the
	// rest of its chain uses (see Want); Chain.run sets it per step.
	want int
	// repeat is set by a step that put first the endpoint of an answer
	// already counted, taking the question for a copy of that one (see
	// leastLoaded); when the chain's answer still puts it first, Chain.Pick
	// records no handouts for it.
	repeat *Ledger
}

// Want is how many leading places of a step's answer the rest of its
// chain uses, 0 when it uses them all: a step may append only the first
// Want places (at least that many while in has them) and leave the rest
// unchosen, so that its cost need not grow with the candidates. A chain
// ending in first=N wants N places of the step before it, and so on back
// through the steps that keep a prefix of their input (ordered, ttl,
// first); a step before one that reorders or filters is wanted whole.
func (r *Request) Want() int { return r.want }

// places is how many places of n candidates a step must choose: n, or
// Want when that is fewer.
func (r *Request) places(n int) int {
	if r.want > 0 && r.want < n {
		return r.want
	}
	return n
}

// Step reorders or filters candidates for one query.
//
// Pick appends to out the indices (into cands) of the endpoints to answer
// with, in answer order, choosing only among the indices in in, and returns
// the extended slice; it may stop after req.Want() places. Pick must not
// block, must not retain or modify cands or in, and must be safe for
// concurrent use. A step returns an empty result only when in is empty.
type Step interface {
	Pick(req *Request, cands []Endpoint, in, out []int) []int
}

// passer is a step that can tell it would answer a snapshot's candidate
// list unchanged and whole: the chain then hands the list itself to the
// next step, without copying it. in and cands are the snapshot's, which
// never change: passes may remember what it found in them, and keep them.
type passer interface {
	passes(cands []Endpoint, in []int) bool
}

// prefixKeeper is a step whose first want places are the first
// prefix(want) places of its input in their order, or fewer (want and
// prefix 0: all): the step before it is wanted that far. Steps that are
// no prefixKeeper are taken to read all their input.
type prefixKeeper interface {
	prefix(want int) int
}

// Builder makes Steps of one kind from their arguments.
type Builder interface {
	// Name is the name the step is known by in a policy string.
	Name() string
	// Traits declares what the builder's steps do beyond choosing; a
	// Chain has the union of its steps' traits. 0 declares a step that
	// keeps or drops candidates in the order it is given them.
	Traits() Traits
	// Build validates args (the text after "name=" in a policy string, or
	// "" when there is none) and returns the Step.
	Build(args string) (Step, error)
}

// Traits are what a step does beyond choosing, as its Builder declares
// them: the zone and the server act on a Chain's traits, never on its
// steps' types.
type Traits uint8

const (
	// Reorders: the step may answer in an order other than the one it
	// is given. SRV answers of a chain that reorders carry its order in
	// their priorities.
	Reorders Traits = 1 << iota
	// ReadsClient: the step's answer depends on Request.Client; the
	// reply's EDNS Client Subnet scope then covers the client's prefix.
	ReadsClient
	// WantsTerminating: endpoints that are terminating but still serving
	// should be the step's candidates too.
	WantsTerminating
	// ReadsLoad: the step reads Endpoint.Live, so the Service's Pod
	// endpoints get live load cells.
	ReadsLoad
	// NeedsUpkeep: the step holds state that must be expired at each
	// sweep and released when its chain is dropped; its Step implements
	// Upkeeper (Parse checks).
	NeedsUpkeep
	// ReadsLocation: the step reads Request.Node and Request.Zone, which
	// the server then resolves from the client address; the reply's EDNS
	// Client Subnet scope then covers the prefix that located the client.
	ReadsLocation
)

// Upkeeper is the upkeep of a step that declares NeedsUpkeep. The Compiler
// calls Expire at each Sweep that keeps the step's chain and Close once
// when it drops it; queries still running on an older snapshot may use
// the step after Close, which must leave it answering but holding nothing.
// Neither runs concurrently with the other for one step.
type Upkeeper interface {
	Expire()
	Close()
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Builder{}
)

// Register makes a Builder available by its name. It is meant to be called
// from init functions and panics on a duplicate name.
func Register(b Builder) {
	registryMu.Lock()
	defer registryMu.Unlock()
	name := b.Name()
	if _, dup := registry[name]; dup {
		panic("policy: step registered twice: " + name)
	}
	registry[name] = b
}

// Get returns the Builder registered under name, or nil.
func Get(name string) Builder {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return registry[name]
}

// Names lists the registered step names, sorted.
func Names() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Chain is a parsed policy: its steps run in order, each on the previous
// step's output. Its fields never change after Parse; steps may keep their
// own concurrent-safe state (sticky assignments, round-robin counters).
type Chain struct {
	spec   string
	steps  []Step
	names  []string
	wants  []int  // per step, its Request.want
	ttl    uint32 // from a ttl step; 0 means the server's
	traits Traits // the union of its steps' builders' traits
	// handouts counts the chain's answers; nil counts nothing. Set by the
	// Compiler before the chain is shared.
	handouts prometheus.Counter
}

// Parse builds a Chain from a policy string such as "ordered" or
// "least-loaded, first=2": steps separated by commas, each "name" or
// "name=args". An empty string is an error.
func Parse(spec string) (*Chain, error) {
	c := &Chain{spec: strings.TrimSpace(spec)}
	if c.spec == "" {
		return nil, fmt.Errorf("policy: empty policy")
	}
	for _, part := range strings.Split(c.spec, ",") {
		part = strings.TrimSpace(part)
		name, args, _ := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		b := Get(name)
		if b == nil {
			return nil, fmt.Errorf("policy: unknown step %q in %q (known: %s)", name, c.spec, strings.Join(Names(), ", "))
		}
		s, err := b.Build(strings.TrimSpace(args))
		if err != nil {
			return nil, fmt.Errorf("policy: step %q: %w", name, err)
		}
		traits := b.Traits()
		if _, ok := s.(Upkeeper); traits&NeedsUpkeep != 0 && !ok {
			return nil, fmt.Errorf("policy: step %q declares NeedsUpkeep but is no Upkeeper", name)
		}
		c.steps = append(c.steps, s)
		c.names = append(c.names, part)
		c.traits |= traits
		if t, ok := s.(ttlStep); ok {
			c.ttl = uint32(t)
		}
	}
	c.wants = make([]int, len(c.steps))
	want := 0 // the answer is the last step's whole output
	for i := len(c.steps) - 1; i >= 0; i-- {
		c.wants[i] = want
		want = 0
		if p, ok := c.steps[i].(prefixKeeper); ok {
			want = p.prefix(c.wants[i])
		}
	}
	return c, nil
}

// Traits is the union of the chain's steps' traits.
func (c *Chain) Traits() Traits { return c.traits }

// TTL is the TTL a ttl step sets for the Service's records, or 0.
func (c *Chain) TTL() uint32 { return c.ttl }

// UsesClient reports whether answers depend on who asks (the reply's EDNS
// Client Subnet scope then covers the client's prefix).
func (c *Chain) UsesClient() bool { return c.traits&ReadsClient != 0 }

// OfferTerminating reports whether endpoints that are terminating but still
// serving should be candidates (the chain has a drain step).
func (c *Chain) OfferTerminating() bool { return c.traits&WantsTerminating != 0 }

// Reorders reports whether the chain may answer in an order other than the
// spec's; SRV answers then carry that order in their priorities.
func (c *Chain) Reorders() bool { return c.traits&Reorders != 0 }

// UsesLoad reports whether some step reads endpoints' load, so that the
// zone should give the Service's endpoints live load cells.
func (c *Chain) UsesLoad() bool { return c.traits&ReadsLoad != 0 }

// UsesLocation reports whether some step reads the client's node and
// zone (Request.Node, Request.Zone), which the server must then resolve.
func (c *Chain) UsesLocation() bool { return c.traits&ReadsLocation != 0 }

// Steps lists the chain's steps as written ("first=2").
func (c *Chain) Steps() []string { return c.names }

// String returns the policy string the Chain was parsed from.
func (c *Chain) String() string { return c.spec }

// close releases what the chain's steps hold beyond their own memory
// (least-loaded's client holds count in endpoints' ledger entries). The
// Compiler calls it when it drops the chain; queries still running on an
// older snapshot may use the chain after it, but no longer hold anything.
func (c *Chain) close() {
	if c.traits&NeedsUpkeep == 0 {
		return
	}
	for _, s := range c.steps {
		if s, ok := s.(Upkeeper); ok {
			s.Close()
		}
	}
}

// expire drops the state its steps keep past its use (least-loaded's
// expired client holds). The Compiler calls it at each Sweep.
func (c *Chain) expire() {
	if c.traits&NeedsUpkeep == 0 {
		return
	}
	for _, s := range c.steps {
		if s, ok := s.(Upkeeper); ok {
			s.Expire()
		}
	}
}

// Scratch holds the buffers a Chain uses between steps. A goroutine that
// serves queries keeps one and reuses it; it must not be shared.
type Scratch struct{ a, b []int }

// Pick runs every step of the chain, each on the previous step's output,
// follows the Step contract (out is extended with the chosen indices), and
// records the handouts in the candidates' ledger entries, unless a step
// took the question for a copy of one already answered and its endpoint
// stayed first (leastLoaded). cands and in must not change afterwards,
// as a snapshot's never do: steps may remember what they found in them
// (passer).
func (c *Chain) Pick(req *Request, cands []Endpoint, in, out []int, s *Scratch) []int {
	start := len(out)
	req.repeat = nil
	out = c.run(req, cands, in, out, s, nil)
	now := nowTicks()
	counted := len(out) == start || req.repeat == nil || cands[out[start]].Ledger != req.repeat
	for pos, i := range out[start:min(len(out), start+recordedPositions)] {
		if cands[i].Ledger != nil && counted {
			cands[i].Ledger.addAt(handoutWeight(pos, req.TTL), now)
		}
		if cands[i].Handouts != nil {
			cands[i].Handouts.Inc()
		}
	}
	if c.handouts != nil {
		c.handouts.Inc()
	}
	return out
}

// StepTrace is one step's input and output, for explaining a choice, and
// the step's note on what it made of the question, when it says.
type StepTrace struct {
	Step   string `json:"step"`
	Input  []int  `json:"input"`
	Output []int  `json:"output"`
	Note   string `json:"note,omitempty"`
}

// noter is a step that says, for a trace, what it makes of a question:
// note answers for the Pick of the same arguments.
type noter interface {
	note(req *Request, cands []Endpoint, in []int) string
}

// traced is step i's trace of a Pick from in to out.
func (c *Chain) traced(i int, req *Request, cands []Endpoint, in, out []int) StepTrace {
	t := StepTrace{Step: c.names[i], Input: slices.Clone(in), Output: slices.Clone(out)}
	if n, ok := c.steps[i].(noter); ok {
		t.Note = n.note(req, cands, in)
	}
	return t
}

// Explain runs the chain like Pick, without recording handouts, and
// returns each step's input and output. Each step orders all its input,
// even where Pick wants only a few places of it (Request.Want): over many
// candidates, least-loaded then ranks them all where Pick ranks a sample.
func (c *Chain) Explain(req *Request, cands []Endpoint, in []int) (out []int, trace []StepTrace) {
	var s Scratch
	dry := *req
	dry.DryRun = true
	out = c.run(&dry, cands, in, nil, &s, &trace)
	return out, trace
}

// want is step i's Request.want: 0 for a chain not made by Parse, and
// while explaining (trace is set), so that each step's trace shows its
// whole order.
func (c *Chain) want(i int, trace *[]StepTrace) int {
	if i < len(c.wants) && trace == nil {
		return c.wants[i]
	}
	return 0
}

func (c *Chain) run(req *Request, cands []Endpoint, in, out []int, s *Scratch, trace *[]StepTrace) []int {
	cur := in
	last := len(c.steps) - 1
	// While cur is in, the caller's list, a passer may hand it on: a
	// scratch buffer changes from one question to the next.
	for i, step := range c.steps[:last] {
		if p, ok := step.(passer); ok && trace == nil && len(cur) > 0 && &cur[0] == &in[0] && p.passes(cands, cur) {
			continue
		}
		buf := &s.a
		if i%2 == 1 {
			buf = &s.b
		}
		req.want = c.want(i, trace)
		*buf = step.Pick(req, cands, cur, (*buf)[:0])
		if trace != nil {
			*trace = append(*trace, c.traced(i, req, cands, cur, *buf))
		}
		cur = *buf
	}
	start := len(out)
	req.want = c.want(last, trace)
	out = c.steps[last].Pick(req, cands, cur, out)
	req.want = 0
	if trace != nil {
		*trace = append(*trace, c.traced(last, req, cands, cur, out[start:]))
	}
	return out
}
