package policy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The Service annotations a policy reads. The zone copies them from the
// Service at the informer; their meaning is this package's.
const (
	// AnnotationPolicy selects a Service's policy chain, e.g. "ordered".
	AnnotationPolicy = "hdns.dev/policy"
	// AnnotationWeights gives endpoints static weights for the weighted
	// step, by Pod name or hostname: "web-0=3, web-1=1" (others weigh 1).
	AnnotationWeights = "hdns.dev/weights"
	// AnnotationLoadQuery replaces the default load query (see
	// Compiler.SetDefaultLoadQuery) for one Service's endpoints; it must
	// return the same namespace and pod labels.
	AnnotationLoadQuery = "hdns.dev/load-query"
)

// EndpointID is who an endpoint is and what state it is in, as the zone
// knows it: what Bind needs to give the endpoint its weight, ledger entry,
// live load cell and counter.
type EndpointID struct {
	// Key identifies the endpoint the same way in every replica and
	// snapshot: its Pod's namespace/name, else its first address.
	Key string
	// PodName is the name of the endpoint's Pod; "" when it is no Pod's
	// (it then gets no live load cell: load sources match by Pod).
	PodName string
	// Hostname is the first label of the endpoint's own name; weights
	// name an endpoint by it when its Pod name has none.
	Hostname string
	// Node and Zone are the endpoint's nodeName and zone, "" when unset.
	Node, Zone string
	// ForZones and ForNodes are the names of the endpoint's EndpointSlice
	// hints.forZones and hints.forNodes, separated by spaces; "" when
	// unset.
	ForZones, ForNodes string
	// The EndpointSlice conditions.
	Ready, Serving, Terminating bool
}

// ServiceChain is one Service's policy for one snapshot build: its chain
// and what binding its endpoints needs. It comes from CompileService and
// is used by the build that asked for it only.
type ServiceChain struct {
	// Chain chooses among the Service's endpoints; nil only when the
	// default policy itself does not compile, which NewCompiler prevents.
	Chain *Chain
	// Err says why the Service's own annotations were rejected (the
	// chain is then the default, or the weights all 1); nil when they
	// were accepted.
	Err error

	// Previous, when set, are the Service's endpoints as its last build
	// bound them (Bind's out then): Bind takes the ledger entries of
	// those that remain from them instead of looking each up again.
	Previous []Endpoint

	compiler  *Compiler
	service   string
	weights   map[string]float64
	loadQuery string // "" when the endpoints get no live load cells
}

// CompileService compiles all of a Service's policy annotations: its chain
// (Compile), its weights and its load query. Bind then makes its
// endpoints.
func (c *Compiler) CompileService(sp ServicePolicy) ServiceChain {
	chain, perr := c.Compile(sp)
	weights, werr := parseWeights(sp.Weights)
	if werr != nil {
		werr = fmt.Errorf("%w; every endpoint weighs 1", werr)
	}
	sc := ServiceChain{Chain: chain, Err: errors.Join(perr, werr), compiler: c, service: sp.Service, weights: weights}
	if chain != nil && chain.UsesLoad() {
		c.mu.Lock()
		if c.loadQuery != "" {
			sc.loadQuery = cmp.Or(strings.TrimSpace(sp.LoadQuery), c.loadQuery)
		}
		c.mu.Unlock()
	}
	return sc
}

// Bind makes the Service's endpoints: out[i] is the endpoint ids[i] says,
// with its weight, its ledger entry, its live load cell under the
// Service's load query (Pod endpoints of chains that read load, when a
// default load query is set) and its per-endpoint counter (when those
// metrics are on). out must be as long as ids. An endpoint new to the
// ledger starts level with its peers (seedNew). What Bind hands out
// survives until a Sweep finds it unasked for since the Sweep before.
func (sc *ServiceChain) Bind(ids []EndpointID, out []Endpoint) {
	c := sc.compiler
	c.mu.Lock()
	prev := sc.Previous
	for i := range ids {
		id := &ids[i]
		ep := Endpoint{Key: id.Key, Ledger: c.ledgerAfter(&prev, id.Key), Weight: sc.weight(id),
			Node: places.intern(id.Node), Zone: places.intern(id.Zone), Hints: hintSets.intern(id.ForZones, id.ForNodes),
			Ready: id.Ready, Serving: id.Serving, Terminating: id.Terminating}
		if sc.loadQuery != "" && id.PodName != "" {
			ep.Live = c.live(sc.loadQuery, id.Key)
		}
		ep.Handouts = c.endpointCounter(sc.service, id.Key)
		out[i] = ep
	}
	c.holdEndpoints(sc.service, sc.loadQuery, ids)
	c.mu.Unlock()
	seedNew(out)
}

// ledgerAfter returns key's ledger entry, with c.mu held: that of the
// first or second of the previous endpoints *prev when it has key, which
// it then consumes, else the Compiler's (ledger). A Service's endpoints
// keep their order from one build to the next and a change adds or drops
// a few, so that most are found in *prev, without a lookup among every
// endpoint's entries. A previous endpoint's entry is the Compiler's: its
// Service holds it until a build without it is swept.
func (c *Compiler) ledgerAfter(prev *[]Endpoint, key string) *Ledger {
	for k := range min(2, len(*prev)) {
		if p := (*prev)[k]; p.Key == key && p.Ledger != nil {
			*prev = (*prev)[k+1:]
			p.Ledger.gen = uint32(c.gen)
			return p.Ledger
		}
	}
	return c.ledger(key)
}

// weight is the endpoint's static weight: the weights annotation's by its
// Pod name, else by its hostname, else 1.
func (sc *ServiceChain) weight(id *EndpointID) float32 {
	if w, ok := sc.weights[id.PodName]; ok {
		return weight32(w)
	}
	if w, ok := sc.weights[id.Hostname]; ok {
		return weight32(w)
	}
	return 1
}

// weight32 is a weight from the annotation as Endpoint holds it: a
// positive weight stays positive and finite.
func weight32(w float64) float32 {
	if w <= 0 {
		return 0
	}
	return float32(min(max(w, math.SmallestNonzeroFloat32), math.MaxFloat32))
}

// parseWeights reads the weights annotation: "name=weight, ...".
func parseWeights(s string) (map[string]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	w := make(map[string]float64)
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if !ok || err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%s %q: want name=weight pairs with weights ≥ 0, got %q", AnnotationWeights, s, part)
		}
		w[strings.TrimSpace(name)] = f
	}
	return w, nil
}
