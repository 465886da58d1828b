// Package policy chooses which endpoints of a headless Service an answer
// names, and in which order.
//
// A policy is a chain of steps. Each step comes from a Builder registered by
// name; the builder parses and validates the step's own arguments once, when a
// snapshot is built, and returns a Step that runs on every query. Steps are
// immutable after Build and are shared by every goroutine serving queries.
package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
)

// Endpoint is what a step may know about one candidate. It is built once per
// snapshot and never mutated afterwards.
type Endpoint struct {
	Hostname    string // the DNS label of the endpoint's own name
	PodName     string // the EndpointSlice targetRef name, if it is a Pod
	NodeName    string
	Zone        string
	Ready       bool
	Serving     bool
	Terminating bool
}

// Request describes the query a choice is made for.
type Request struct {
	// Qtype is the DNS type asked for (A, AAAA, SRV...).
	Qtype uint16
	// Client identifies the asker: the EDNS Client Subnet address when
	// present, else the source address.
	Client netip.Addr
}

// Step reorders or filters candidates for one query.
//
// Pick appends to out the indices (into cands) of the endpoints to answer
// with, in answer order, choosing only among the indices in in, and returns
// the extended slice. Pick must not block, must not retain or modify cands or
// in, and must be safe for concurrent use. A step returns an empty result only
// when in is empty.
type Step interface {
	Pick(req *Request, cands []Endpoint, in, out []int) []int
}

// Builder makes Steps of one kind from their arguments.
type Builder interface {
	// Name is the name the step is known by in a policy string.
	Name() string
	// Build validates args (the text after "name=" in a policy string, or
	// "" when there is none) and returns the Step.
	Build(args string) (Step, error)
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
// step's output. A Chain is immutable.
type Chain struct {
	spec  string
	steps []Step
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
		c.steps = append(c.steps, s)
	}
	return c, nil
}

// String returns the policy string the Chain was parsed from.
func (c *Chain) String() string { return c.spec }

// Scratch holds the buffers a Chain uses between steps. A goroutine that
// serves queries keeps one and reuses it; it must not be shared.
type Scratch struct{ a, b []int }

// Pick runs every step of the chain, each on the previous step's output, and
// follows the Step contract: out is extended with the chosen indices.
func (c *Chain) Pick(req *Request, cands []Endpoint, in, out []int, s *Scratch) []int {
	cur := in
	last := len(c.steps) - 1
	for i, step := range c.steps[:last] {
		buf := &s.a
		if i%2 == 1 {
			buf = &s.b
		}
		*buf = step.Pick(req, cands, cur, (*buf)[:0])
		cur = *buf
	}
	return c.steps[last].Pick(req, cands, cur, out)
}
