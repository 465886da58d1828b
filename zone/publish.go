package zone

import (
	"context"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// releaseAfter is how long the zone must stay unchanged after a rebuild
// before the Publisher hands the memory of replaced snapshots back to the
// operating system.
const releaseAfter = 2 * time.Second

// upkeepEvery is how often Run expires what the policies' steps hold past
// its use (policy.Compiler.Upkeep). An incremental publish sweeps only the
// Services it rebuilt, so that the upkeep of all the others, which costs
// the whole cluster's Services, runs on this timer instead: its cost does
// not fall on each change, and a zone that no change touches for hours
// still expires its Services' client holds.
const upkeepEvery = 5 * time.Second

// Publisher owns the current Snapshot and the objects it is built from.
// Sources hand it their changes through its Sink methods, which record them
// and schedule a rebuild; one goroutine, Run, rebuilds and publishes once
// per batch of changes. Any number of goroutines may call Snapshot
// concurrently without locking.
type Publisher struct {
	opts    *Options
	log     *slog.Logger
	metrics *Metrics // may be nil

	current atomic.Pointer[Snapshot]
	store   *store
	// state is what the current Snapshot was built from; nil before the
	// first build. Owned by the Run goroutine.
	state *zoneState
	dirty chan struct{} // capacity 1: a pending rebuild coalesces all later changes

	// Owned by the Run goroutine.
	serial     uint32
	triggers   map[string]time.Time // slice namespace/name → last trigger time seen
	policyErrs map[string]string    // Service → policy error last logged
	// release runs once the zone has been quiet for releaseAfter after a
	// rebuild: debug.FreeOSMemory, replaced in tests.
	release func()
	// rebuilt, when set, runs after each rebuild Run attempts: a test's
	// hold on the Run goroutine.
	rebuilt func()
}

var _ Sink = (*Publisher)(nil)

// NewPublisher returns a Publisher that builds with opts. metrics may be nil.
func NewPublisher(opts *Options, log *slog.Logger, metrics *Metrics) *Publisher {
	return &Publisher{
		opts:       opts,
		log:        log,
		metrics:    metrics,
		store:      newStore(),
		dirty:      make(chan struct{}, 1),
		serial:     uint32(time.Now().Unix()),
		triggers:   make(map[string]time.Time),
		policyErrs: make(map[string]string),
		release:    debug.FreeOSMemory,
	}
}

// Snapshot returns the current Snapshot, or nil before the first complete
// view has been built.
func (p *Publisher) Snapshot() *Snapshot { return p.current.Load() }

// Apply implements Sink.
func (p *Publisher) Apply(changes ...Change) {
	p.store.record(changes)
	p.changed()
}

// Replace implements Sink.
func (p *Publisher) Replace(services []*Service, slices []*EndpointSlice) {
	p.store.replace(services, slices)
	p.changed()
}

// changed schedules a rebuild. It never blocks; many calls before the
// rebuild starts cause one rebuild.
func (p *Publisher) changed() {
	select {
	case p.dirty <- struct{}{}:
	default:
	}
}

// Run rebuilds after changes until ctx is done: one rebuild for all the
// changes recorded while the previous one ran.
//
// A rebuild replaces the whole snapshot, and the replaced one stays in the
// heap as garbage until the next GC, which an idle server may not run for
// minutes: after a burst of rebuilds (the initial sync of a large cluster,
// a rollout) the process would keep about twice its live heap. Once the
// zone has been quiet for releaseAfter, Run collects it and returns the
// memory (one GC per burst, none while changes keep coming).
func (p *Publisher) Run(ctx context.Context) {
	quiet := time.NewTimer(releaseAfter)
	quiet.Stop()
	defer quiet.Stop()
	upkeep := time.NewTicker(upkeepEvery)
	defer upkeep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-quiet.C:
			p.release()
			continue
		case <-upkeep.C:
			p.opts.Policies.Upkeep()
			continue
		case <-p.dirty:
		}
		if p.rebuild() {
			quiet.Reset(releaseAfter)
		}
		if p.rebuilt != nil {
			p.rebuilt()
		}
	}
}

// Rebuild builds and publishes a Snapshot now, on the caller's goroutine,
// and reports whether it did (not before the first Replace). It is for
// sources that load synchronously before Run starts (and tests); it must
// not run concurrently with Run.
func (p *Publisher) Rebuild() bool { return p.rebuild() }

// rebuild builds and publishes a Snapshot, unless nothing changed since
// the last one. The first build, and the one after a Replace (a relist),
// build every Service; the others rebuild only the Services their batch
// of changes touched and share the rest with the current Snapshot.
func (p *Publisher) rebuild() bool {
	v, ok := p.store.take()
	if !ok || (len(v.batch) == 0 && !v.replaced && p.current.Load() != nil) {
		return false
	}
	p.observeBatch(v.batch)
	start := time.Now()
	p.serial++
	first := p.current.Load() == nil
	var snap *Snapshot
	incremental := p.state != nil && !v.replaced && p.state.incremental() && !anyOdd(v.touched)
	if incremental {
		snap = p.state.update(p.serial, v.touched)
	} else {
		services, slices := p.store.all()
		snap, p.state = buildFull(p.opts, p.serial, services, slices)
	}
	p.current.Store(snap)
	// What the new snapshot's Services asked for survives; what only
	// replaced snapshots used goes.
	var rebuilt []string
	if incremental {
		rebuilt = serviceNames(v.touched)
		p.opts.Policies.SweepServices(rebuilt)
	} else {
		p.opts.Policies.Sweep()
	}
	published := time.Now()
	took := published.Sub(start)
	if p.metrics != nil {
		p.metrics.observeBuild(snap, took, incremental, len(v.touched))
	}
	p.observeProgramming(v, published, first)
	p.reportPolicyErrors(snap)
	p.log.Debug("published zone snapshot", "serial", snap.Serial, "incremental", incremental,
		"rebuilt.services", len(rebuilt), "rebuilt", rebuilt[:min(len(rebuilt), maxLoggedServices)], "services", snap.Stats.Services,
		"endpoints", snap.Stats.Endpoints, "names", snap.Stats.Names, "took", took)
	return true
}

// maxLoggedServices bounds the Services a publish's debug log names.
const maxLoggedServices = 10

// anyOdd reports whether a touched Service's namespace or name is not a
// DNS label (see zoneState.odd).
func anyOdd(touched map[serviceKey]touchedService) bool {
	for k := range touched {
		if !isLabel(k.Namespace) || !isLabel(k.Name) {
			return true
		}
	}
	return false
}

// serviceNames returns the touched Services' namespace/name.
func serviceNames(touched map[serviceKey]touchedService) []string {
	out := make([]string, 0, len(touched))
	for k := range touched {
		out = append(out, k.Namespace+"/"+k.Name)
	}
	return out
}

// observeBatch counts and logs the objects a batch changed.
func (p *Publisher) observeBatch(batch map[ObjectKey]Op) {
	var counts [ObjectEndpointSlice + 1][OpDelete + 1]int
	for k, op := range batch {
		counts[k.Kind][op]++
	}
	for kind := ObjectService; kind <= ObjectEndpointSlice; kind++ {
		for op := OpUpsert; op <= OpDelete; op++ {
			if n := counts[kind][op]; n > 0 && p.metrics != nil {
				p.metrics.Changes.WithLabelValues(kind.String(), op.String()).Add(float64(n))
			}
		}
	}
	p.log.Debug("zone changes", "services.upserted", counts[ObjectService][OpUpsert],
		"services.deleted", counts[ObjectService][OpDelete],
		"slices.upserted", counts[ObjectEndpointSlice][OpUpsert],
		"slices.deleted", counts[ObjectEndpointSlice][OpDelete])
}

// observeProgramming records, for every slice the batch upserted whose
// controller trigger time moved since the last build, how long the change
// took to reach answers. Trigger times seen in the first build are
// history, not latency.
func (p *Publisher) observeProgramming(v view, published time.Time, first bool) {
	for k, op := range v.batch {
		if k.Kind == ObjectEndpointSlice && op == OpDelete {
			delete(p.triggers, k.Namespace+"/"+k.Name)
		}
	}
	for _, s := range v.changed {
		key := s.Namespace + "/" + s.Name
		if s.TriggerTime.IsZero() {
			delete(p.triggers, key)
			continue
		}
		prev, ok := p.triggers[key]
		p.triggers[key] = s.TriggerTime
		if first || p.metrics == nil {
			continue
		}
		if !ok || s.TriggerTime.After(prev) {
			p.metrics.ProgrammingLatency.Observe(published.Sub(s.TriggerTime).Seconds())
		}
	}
}

// reportPolicyErrors logs each rejected policy annotation once, when it
// appears or changes, and keeps the gauge of rejected Services current.
func (p *Publisher) reportPolicyErrors(snap *Snapshot) {
	now := make(map[string]string, len(snap.PolicyErrors))
	for _, pe := range snap.PolicyErrors {
		msg := pe.Err.Error()
		now[pe.Service] = msg
		if p.policyErrs[pe.Service] != msg {
			p.log.Warn("policy annotation rejected", "service", pe.Service, "err", pe.Err)
		}
	}
	p.policyErrs = now
	if p.metrics != nil {
		p.metrics.PolicyErrors.Set(float64(len(now)))
	}
}
