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
	dirty   chan struct{} // capacity 1: a pending rebuild coalesces all later changes

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
	for {
		select {
		case <-ctx.Done():
			return
		case <-quiet.C:
			p.release()
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

// rebuild builds from the whole store, unless nothing changed since the
// last build. The batch of keys that changed since then is known here: a
// build of only what they touch starts from it.
func (p *Publisher) rebuild() bool {
	v, ok := p.store.take()
	if !ok || (len(v.batch) == 0 && !v.replaced && p.current.Load() != nil) {
		return false
	}
	p.observeBatch(v.batch)
	services, slices := v.services, v.slices
	start := time.Now()
	p.serial++
	snap := Build(p.opts, p.serial, services, slices)
	first := p.current.Load() == nil
	p.current.Store(snap)
	// What the new snapshot's Services asked for survives; what only
	// replaced snapshots used goes. A build that changed one Service
	// would release that Service's state alone.
	p.opts.Policies.Sweep()
	published := time.Now()
	took := published.Sub(start)
	if p.metrics != nil {
		p.metrics.observeBuild(snap, took)
	}
	p.observeProgramming(slices, published, first)
	p.reportPolicyErrors(snap)
	p.log.Debug("published zone snapshot", "serial", snap.Serial, "services", snap.Stats.Services,
		"endpoints", snap.Stats.Endpoints, "names", snap.Stats.Names, "took", took)
	return true
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

// observeProgramming records, for every slice whose controller trigger time
// moved since the last build, how long the change took to reach answers.
// Trigger times seen in the first build are history, not latency.
func (p *Publisher) observeProgramming(slices []*EndpointSlice, published time.Time, first bool) {
	seen := make(map[string]time.Time, len(slices))
	for _, s := range slices {
		if s.TriggerTime.IsZero() {
			continue
		}
		key := s.Namespace + "/" + s.Name
		seen[key] = s.TriggerTime
		if first || p.metrics == nil {
			continue
		}
		if prev, ok := p.triggers[key]; !ok || s.TriggerTime.After(prev) {
			p.metrics.ProgrammingLatency.Observe(published.Sub(s.TriggerTime).Seconds())
		}
	}
	p.triggers = seen
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
