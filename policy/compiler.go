package policy

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Compiler turns Services' policy annotations into Chains and keeps what
// must outlive one snapshot: Chains whose steps hold state (sticky
// assignments, round-robin counters), the handout ledger and the live load
// cells a load source writes (see Live and UpdateLive). The zone
// builder calls it while building a snapshot (CompileService, then Bind
// for each headless Service), and the snapshot's publisher sweeps it after
// (Sweep); queries never do, so its lock is off the query path.
type Compiler struct {
	defaultSpec string
	handouts    *prometheus.CounterVec // may be nil
	perEndpoint *prometheus.CounterVec // may be nil

	mu        sync.Mutex
	loadQuery string // the default load query; "" without a load source
	gen       uint64
	chains    map[chainKey]*chainEntry
	// loads holds the ledger entries by the hash of their endpoint key:
	// the keys themselves would cost a string each. Two keys of one hash
	// (at 50,000 endpoints, odds of about 1 in 10^10) share an entry.
	ledgers map[uint64]*Ledger
	seed    maphash.Seed
	lives   map[liveKey]*liveEntry
	series  map[[2]string]uint64 // (service, endpoint) per-endpoint series → gen
	// held is what each Service's last build asked for, and heldBy how
	// many Services' builds hold each chain, ledger entry, live cell and
	// series: a build that rebuilds some Services only releases what
	// those no longer ask for, and keeps the others' (see SweepServices).
	held   map[string]*serviceHold
	heldBy holdCounts
	// building lists the Services built since the last sweep.
	building []*serviceHold
	// chainsOf counts each Service's chains (a Service has one per spec
	// it was compiled with and still holds).
	chainsOf map[string]int
}

type chainKey struct {
	service, spec string
}

type chainEntry struct {
	chain *Chain
	err   error
	gen   uint64
}

// NewCompiler returns a Compiler whose default policy is defaultSpec; it
// fails when defaultSpec does not parse.
func NewCompiler(defaultSpec string) (*Compiler, error) {
	if _, err := Parse(defaultSpec); err != nil {
		return nil, err
	}
	return &Compiler{
		defaultSpec: defaultSpec,
		chains:      make(map[chainKey]*chainEntry),
		ledgers:     make(map[uint64]*Ledger),
		seed:        maphash.MakeSeed(),
		lives:       make(map[liveKey]*liveEntry),
		series:      make(map[[2]string]uint64),
		held:        make(map[string]*serviceHold),
		heldBy:      newHoldCounts(),
		chainsOf:    make(map[string]int),
	}, nil
}

// RegisterMetrics makes the Compiler's chains count their answers in
// hdns_policy_handouts_total{service}, exposes least-loaded's client holds
// (hdns_policy_client_holds, hdns_policy_client_holds_refused_total,
// hdns_policy_copies_total: process-wide counts, so one Compiler per
// registry), and with perEndpoint also each
// endpoint's places in answers in
// hdns_policy_endpoint_handouts_total{service,endpoint} (a series per
// endpoint: mind the cardinality). Call it before the first Compile.
func (c *Compiler) RegisterMetrics(reg prometheus.Registerer, perEndpoint bool) {
	c.handouts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hdns_policy_handouts_total",
		Help: "Answers chosen by a Service's policy, by Service (namespace/name).",
	}, []string{"service"})
	reg.MustRegister(c.handouts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hdns_policy_client_holds",
			Help: "Clients least-loaded remembers as holding an endpoint now, over all Services.",
		}, func() float64 { return float64(holdsTotal.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hdns_policy_client_holds_refused_total",
			Help: "Clients least-loaded did not remember because the process-wide bound on holds was reached.",
		}, func() float64 { return float64(holdsRefused.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hdns_policy_copies_total",
			Help: "Questions least-loaded took for a copy of the same client's question just answered (a cache forwarding concurrent misses, a dual-stack client's A and AAAA): answered with the same first place and not counted in the ledger again.",
		}, func() float64 { return float64(holdsRepeated.Load()) }))
	if perEndpoint {
		c.perEndpoint = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hdns_policy_endpoint_handouts_total",
			Help: "Times an endpoint was among the first places of an answer, by Service and endpoint key.",
		}, []string{"service", "endpoint"})
		reg.MustRegister(c.perEndpoint)
	}
}

// SetDefaultLoadQuery sets the load query (--load-query) of Services
// whose chain reads load and that have no load-query annotation; "" (the
// default) when no load source is configured: no endpoint then gets a
// live load cell. It applies from the next CompileService.
func (c *Compiler) SetDefaultLoadQuery(query string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loadQuery = query
}

// EndpointCounter returns the per-endpoint handout counter of an endpoint
// of service, or nil when per-endpoint metrics are off.
func (c *Compiler) EndpointCounter(service, key string) *Handouts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endpointCounter(service, key)
}

// endpointCounter is EndpointCounter with c.mu held.
func (c *Compiler) endpointCounter(service, key string) *Handouts {
	if c.perEndpoint == nil {
		return nil
	}
	c.series[[2]string{service, key}] = c.gen
	return &Handouts{c.perEndpoint.WithLabelValues(service, key)}
}

// ServicePolicy is what decides a Service's policy: its policy
// annotations and session affinity.
type ServicePolicy struct {
	// Service is "namespace/name".
	Service string
	// Annotation is the hdns.dev/policy annotation, "" when absent.
	Annotation string
	// Weights is the hdns.dev/weights annotation, "" when absent.
	Weights string
	// LoadQuery is the hdns.dev/load-query annotation, "" when absent.
	LoadQuery string
	// AffinityTimeout is the ClientIP sessionAffinity timeout; 0 when the
	// Service has no session affinity.
	AffinityTimeout time.Duration
	// TrafficDistribution is the Service's spec.trafficDistribution, ""
	// when unset: PreferSameZone (or its older spelling PreferClose) adds
	// a prefer-zone step, PreferSameNode a prefer-node step, unless the
	// policy already has a locality step (see withLocality).
	TrafficDistribution string
	// Hints is the trafficDistribution the Service's EndpointSlice hints
	// stand for (HintedDistribution), "" without hints. When neither the
	// policy nor TrafficDistribution has a locality step, it adds the one
	// it names, following hints only (by:hints): kube-proxy follows hints
	// whenever every ready endpoint has them, and ignores them otherwise.
	Hints string
}

// Compile returns the Service's chain. An invalid annotation yields the
// default chain and the error that says why. The same Service with the same
// policy gets the same Chain back, with its state, build after build.
func (c *Compiler) Compile(sp ServicePolicy) (*Chain, error) {
	spec := sp.Annotation
	if spec == "" {
		spec = c.defaultSpec
	}
	chain, err := c.chain(sp.Service, sp.complete(spec))
	if err == nil || sp.Annotation == "" {
		return chain, err
	}
	def, derr := c.chain(sp.Service, sp.complete(c.defaultSpec))
	if derr != nil {
		return nil, derr
	}
	return def, fmt.Errorf("annotation %q rejected, serving %q instead: %w", sp.Annotation, def.String(), err)
}

// complete adds to spec the steps the Service's other fields ask for: the
// sticky step of its affinity, the locality step of its
// trafficDistribution, else of its hints.
func (sp *ServicePolicy) complete(spec string) string {
	return withHints(withLocality(withAffinity(spec, sp.AffinityTimeout), sp.TrafficDistribution), sp.Hints)
}

func (c *Compiler) chain(service, spec string) (*Chain, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := chainKey{service, spec}
	e := c.chains[k]
	if e == nil {
		e = &chainEntry{}
		e.chain, e.err = Parse(spec)
		if e.err == nil && c.handouts != nil {
			e.chain.handouts = c.handouts.WithLabelValues(service)
		}
		c.chains[k] = e
		c.chainsOf[service]++
	}
	e.gen = c.gen
	h := c.hold(service)
	h.cur.chains = append(h.cur.chains, k)
	return e.chain, e.err
}

// withAffinity adds a sticky step for a Service with ClientIP session
// affinity when its policy has none, before any subsetting step, so that
// the client's endpoint survives the subset.
func withAffinity(spec string, timeout time.Duration) string {
	if timeout <= 0 {
		return spec
	}
	parts := strings.Split(spec, ",")
	at := len(parts)
	for i, p := range parts {
		name, _, _ := strings.Cut(strings.TrimSpace(p), "=")
		if name == "sticky" {
			return spec
		}
		if name == "first" && at == len(parts) {
			at = i
		}
	}
	step := fmt.Sprintf(" sticky=%d", int(timeout/time.Second))
	parts = append(parts[:at], append([]string{step}, parts[at:]...)...)
	return strings.TrimSpace(strings.Join(parts, ","))
}

// Ledger returns the ledger entry of the endpoint key, creating it. Entries
// survive as long as some snapshot build asks for them.
func (c *Compiler) Ledger(key string) *Ledger {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ledger(key)
}

// ledger is Ledger with c.mu held.
func (c *Compiler) ledger(key string) *Ledger {
	h := c.keyHash(key)
	l := c.ledgers[h]
	if l == nil {
		l = new(Ledger)
		c.ledgers[h] = l
	}
	l.gen = uint32(c.gen)
	return l
}

// Sweep forgets the chains, ledger entries, live cells and per-endpoint
// series that no Compile, Bind, Ledger, Live or EndpointCounter asked for
// since the previous Sweep, and expires what the kept chains' steps hold
// past its use (Upkeep). Whoever publishes snapshots calls it after each
// build of every Service (zone.Publisher), so that what the published
// snapshot uses survives; after a build of some Services, SweepServices.
func (c *Compiler) Sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for svc, h := range c.held {
		if !h.built {
			c.heldBy.add(&h.cur, -1)
			delete(c.held, svc)
		}
	}
	c.settle()
	for k, e := range c.chains {
		c.dropChain(k, e)
	}
	for k := range c.ledgers {
		c.dropLedger(k)
	}
	for k := range c.lives {
		c.dropLive(k)
	}
	for k := range c.series {
		c.dropSeries(k)
	}
	c.heldBy.released.clear()
	c.upkeep()
	c.gen++
}

// SweepServices is Sweep after a build of the Services rebuilt
// ("namespace/name") only: each keeps what its build asked for and
// releases what its previous build alone held; one rebuilt without asking
// for anything (deleted, or no longer headless) releases all it held. The
// state of the other Services stays as it is, whatever the build asked
// for, and so does their chains' upkeep, which is Upkeep's. Its cost is
// that of the rebuilt Services, not of the Compiler's state.
func (c *Compiler) SweepServices(rebuilt []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, svc := range rebuilt {
		if h := c.held[svc]; h != nil && !h.built {
			c.heldBy.add(&h.cur, -1)
			delete(c.held, svc)
		}
	}
	c.settle()
	r := &c.heldBy.released
	for _, k := range r.chains {
		if e := c.chains[k]; e != nil {
			c.dropChain(k, e)
		}
	}
	for _, k := range r.ledgers {
		c.dropLedger(k)
	}
	for _, k := range r.lives {
		c.dropLive(k)
	}
	for _, k := range r.series {
		c.dropSeries(k)
	}
	r.clear()
	c.gen++
}

// Upkeep expires what every chain's steps hold past its use (least-loaded's
// client holds). Sweep runs it; a publisher that builds some Services only
// (SweepServices) runs it on a timer, so that the holds of Services no
// change touches expire too, at a cost that does not fall on each change.
func (c *Compiler) Upkeep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upkeep()
}

func (c *Compiler) upkeep() {
	for _, e := range c.chains {
		if e.chain != nil {
			e.chain.expire()
		}
	}
}

// settle counts what the Services built since the last sweep hold now,
// in place of what they held before. A rebuild usually lists the same keys
// as the build before it but for a few endpoints, so only the keys between
// the lists' common prefix and suffix are counted: the same counts as
// adding every current key and taking away every previous one, at the cost
// of a comparison per key instead of two map updates.
func (c *Compiler) settle() {
	for _, h := range c.building {
		c.heldBy.replace(&h.cur, &h.prev)
		h.prev, h.built = heldKeys{}, false
	}
	clear(c.building)
	c.building = c.building[:0]
}

// dropChain forgets the chain of k unless a Service holds it or something
// asked for it since the last sweep.
func (c *Compiler) dropChain(k chainKey, e *chainEntry) {
	if c.heldBy.chains[k] > 0 || e.gen == c.gen {
		return
	}
	delete(c.chains, k)
	if e.chain != nil {
		e.chain.close()
	}
	if c.chainsOf[k.service]--; c.chainsOf[k.service] > 0 {
		return
	}
	delete(c.chainsOf, k.service)
	if c.handouts != nil {
		c.handouts.DeleteLabelValues(k.service)
	}
}

func (c *Compiler) dropLedger(k uint64) {
	if l := c.ledgers[k]; l != nil && c.heldBy.ledgers[k] <= 0 && l.gen != uint32(c.gen) {
		delete(c.ledgers, k)
	}
}

func (c *Compiler) dropLive(k liveKey) {
	if e := c.lives[k]; e != nil && c.heldBy.lives[k] <= 0 && e.gen != c.gen {
		delete(c.lives, k)
	}
}

func (c *Compiler) dropSeries(k [2]string) {
	if gen, ok := c.series[k]; ok && c.heldBy.series[k] <= 0 && gen != c.gen {
		delete(c.series, k)
		c.perEndpoint.DeleteLabelValues(k[0], k[1])
	}
}

// keyHash is the hash the Compiler keeps ledger entries by, seeded per
// Compiler so that no one can name Pods to collide with another's key.
func (c *Compiler) keyHash(key string) uint64 { return maphash.String(c.seed, key) }

// serviceHold is what one Service's builds asked for: cur since its
// current build began, prev what its previous build held, until the
// sweep settles the difference.
type serviceHold struct {
	built     bool // built since the last sweep, not yet settled
	cur, prev heldKeys
}

// heldKeys lists what one Service holds; a key may repeat (one per zone).
type heldKeys struct {
	chains  []chainKey
	ledgers []uint64
	lives   []liveKey
	series  [][2]string
}

func (k *heldKeys) clear() { *k = heldKeys{} }

// hold returns service's hold for the build under way, with c.mu held:
// the first call since a sweep starts the Service's new list.
func (c *Compiler) hold(service string) *serviceHold {
	h := c.held[service]
	if h == nil {
		h = &serviceHold{}
		c.held[service] = h
	}
	if !h.built {
		h.prev, h.cur, h.built = h.cur, heldKeys{}, true
		c.building = append(c.building, h)
	}
	return h
}

// holdEndpoints records, with c.mu held, that a build of service bound
// ids (Bind): their ledger entries, and their live cells under loadQuery
// ("" for none) and per-endpoint series when those exist.
func (c *Compiler) holdEndpoints(service, loadQuery string, ids []EndpointID) {
	h := c.hold(service)
	// One array of the lists' final size rather than the copies that
	// growing it one key at a time makes.
	h.cur.ledgers = slices.Grow(h.cur.ledgers, len(ids))
	for i := range ids {
		h.cur.ledgers = append(h.cur.ledgers, c.keyHash(ids[i].Key))
		if loadQuery != "" && ids[i].PodName != "" {
			h.cur.lives = append(h.cur.lives, liveKey{loadQuery, ids[i].Key})
		}
		if c.perEndpoint != nil {
			h.cur.series = append(h.cur.series, [2]string{service, ids[i].Key})
		}
	}
}
