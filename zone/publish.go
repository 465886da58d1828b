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

// ListFunc returns every Service and EndpointSlice a source currently
// holds. complete is false while the source has not yet seen a full view
// (informers not synced, first manifest load failed); nothing is built then.
type ListFunc func() (services []*Service, slices []*EndpointSlice, complete bool)

// Publisher owns the current Snapshot. Sources call Changed; one goroutine,
// Run, rebuilds and publishes. Any number of goroutines may call Snapshot
// concurrently without locking.
type Publisher struct {
	opts    *Options
	log     *slog.Logger
	metrics *Metrics // may be nil

	current atomic.Pointer[Snapshot]
	dirty   chan struct{} // capacity 1: a pending rebuild coalesces all later changes

	// Owned by the Run goroutine.
	serial     uint32
	triggers   map[string]time.Time // slice namespace/name → last trigger time seen
	policyErrs map[string]string    // Service → policy error last logged
	// release runs once the zone has been quiet for releaseAfter after a
	// rebuild: debug.FreeOSMemory, replaced in tests.
	release func()
}

// NewPublisher returns a Publisher that builds with opts. metrics may be nil.
func NewPublisher(opts *Options, log *slog.Logger, metrics *Metrics) *Publisher {
	return &Publisher{
		opts:       opts,
		log:        log,
		metrics:    metrics,
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

// Changed schedules a rebuild. It never blocks; many calls before the
// rebuild starts cause one rebuild.
func (p *Publisher) Changed() {
	select {
	case p.dirty <- struct{}{}:
	default:
	}
}

// Run rebuilds after every Changed until ctx is done.
//
// A rebuild replaces the whole snapshot, and the replaced one stays in the
// heap as garbage until the next GC, which an idle server may not run for
// minutes: after a burst of rebuilds (the initial sync of a large cluster,
// a rollout) the process would keep about twice its live heap. Once the
// zone has been quiet for releaseAfter, Run collects it and returns the
// memory (one GC per burst, none while changes keep coming).
func (p *Publisher) Run(ctx context.Context, list ListFunc) {
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
		if p.rebuild(list) {
			quiet.Reset(releaseAfter)
		}
	}
}

// Rebuild builds and publishes a Snapshot now, on the caller's goroutine.
// It is for sources that load synchronously before Run starts (and tests);
// it must not run concurrently with Run.
func (p *Publisher) Rebuild(list ListFunc) bool { return p.rebuild(list) }

func (p *Publisher) rebuild(list ListFunc) bool {
	services, slices, complete := list()
	if !complete {
		return false
	}
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
