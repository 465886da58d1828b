package policy

import (
	"fmt"
	"hash/maphash"
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
}

// Compile returns the Service's chain. An invalid annotation yields the
// default chain and the error that says why. The same Service with the same
// policy gets the same Chain back, with its state, build after build.
func (c *Compiler) Compile(sp ServicePolicy) (*Chain, error) {
	spec := sp.Annotation
	if spec == "" {
		spec = c.defaultSpec
	}
	chain, err := c.chain(sp.Service, withAffinity(spec, sp.AffinityTimeout))
	if err == nil || sp.Annotation == "" {
		return chain, err
	}
	def, derr := c.chain(sp.Service, withAffinity(c.defaultSpec, sp.AffinityTimeout))
	if derr != nil {
		return nil, derr
	}
	return def, fmt.Errorf("annotation %q rejected, serving %q instead: %w", sp.Annotation, def.String(), err)
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
	}
	e.gen = c.gen
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
// past its use. Whoever publishes snapshots calls it after each build
// (zone.Publisher), so that what the published snapshot uses survives.
func (c *Compiler) Sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	live, gone := make(map[string]bool), make(map[string]bool)
	for k, e := range c.chains {
		if e.gen != c.gen {
			delete(c.chains, k)
			if e.chain != nil {
				e.chain.close()
			}
			gone[k.service] = true
		} else {
			live[k.service] = true
			if e.chain != nil {
				e.chain.expire()
			}
		}
	}
	for svc := range gone {
		if c.handouts != nil && !live[svc] {
			c.handouts.DeleteLabelValues(svc)
		}
	}
	for k, l := range c.ledgers {
		if l.gen != uint32(c.gen) {
			delete(c.ledgers, k)
		}
	}
	for k, e := range c.lives {
		if e.gen != c.gen {
			delete(c.lives, k)
		}
	}
	for k, gen := range c.series {
		if gen != c.gen {
			delete(c.series, k)
			c.perEndpoint.DeleteLabelValues(k[0], k[1])
		}
	}
	c.gen++
}

// keyHash is the hash the Compiler keeps ledger entries by, seeded per
// Compiler so that no one can name Pods to collide with another's key.
func (c *Compiler) keyHash(key string) uint64 { return maphash.String(c.seed, key) }
