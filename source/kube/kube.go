// Package kube is the Kubernetes source of the zone: informers on Services
// and EndpointSlices (and Nodes, for locating clients), shrunk to package zone's small structs as they arrive,
// and a probe of the API server that relists after an outage. It owns the
// watches and nothing else; the zone decides what to build.
//
// It must not import server/ or policy/; zone must not import it.
package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/hdns-dev/hdns/zone"
)

// Source watches Services and EndpointSlices through the API server.
// Its informers store only the small structs of package zone.
//
// While it runs it also probes the API server. When the server was
// unreachable and answers again, Source starts a fresh pair of
// informers and switches to them once they have synced, instead of
// waiting out client-go's reconnect backoff (up to a minute); until then
// the last zone keeps serving.
type Source struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// Namespace limits the watch to one namespace; "" watches all.
	Namespace string
	// LabelSelector limits which Services are served; "" serves all.
	// EndpointSlices are watched in full and joined to the Services kept.
	LabelSelector string
	// ProbeInterval is how often the API server is probed; 0 means 2s.
	ProbeInterval time.Duration
	// Probe checks that the API server answers; nil asks for its version.
	Probe func(context.Context) error
	// Log receives watch errors; nil logs nowhere.
	Log *slog.Logger
	// Metrics counts watch errors; nil counts nowhere.
	Metrics *zone.Metrics
	// Nodes watches Nodes too (cluster-wide, whatever Namespace says),
	// which needs list and watch on nodes, and hands them to the sink by
	// Apply: Replace does not carry them.
	Nodes bool

	current atomic.Pointer[watchSet] // the synced informers whose events reach the sink
	// handoff orders the current set's events against the Replace that
	// makes another set current, so that no event of a replaced set
	// reaches the sink after the Replace.
	handoff sync.Mutex
	// nodesHeld names the Nodes the sink was handed and not deleted;
	// guarded by handoff.
	nodesHeld map[string]bool
	sets      atomic.Int64 // watch sets started, for tests
}

// watchSet is one pair of informers (a third with Nodes) with the
// factories that run them.
type watchSet struct {
	services, slices cache.SharedIndexInformer
	nodes            cache.SharedIndexInformer // nil without Source.Nodes
	factories        []informers.SharedInformerFactory
	cancel           context.CancelFunc
}

// informers returns the set's informers.
func (w *watchSet) informers() []cache.SharedIndexInformer {
	if w.nodes == nil {
		return []cache.SharedIndexInformer{w.services, w.slices}
	}
	return []cache.SharedIndexInformer{w.services, w.slices, w.nodes}
}

// startWatchSet creates and starts informers whose events go to sink once
// they are the current set.
func (k *Source) startWatchSet(ctx context.Context, sink zone.Sink) (*watchSet, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watchSet{cancel: cancel}
	svcFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0,
		informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = k.LabelSelector }))
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0, informers.WithNamespace(k.Namespace))
	w.factories = []informers.SharedInformerFactory{svcFactory, sliceFactory}
	w.services = svcFactory.Core().V1().Services().Informer()
	w.slices = sliceFactory.Discovery().V1().EndpointSlices().Informer()
	if k.Nodes {
		nodeFactory := informers.NewSharedInformerFactory(k.Client, 0)
		w.factories = append(w.factories, nodeFactory)
		w.nodes = nodeFactory.Core().V1().Nodes().Informer()
	}

	// Events of the initial list are covered by the Replace that makes
	// the set current.
	notify := func(op zone.Op, obj any) {
		k.handoff.Lock()
		defer k.handoff.Unlock()
		if k.current.Load() != w {
			return
		}
		if c, ok := change(op, obj); ok {
			k.holdNode(c)
			sink.Apply(c)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { notify(zone.OpUpsert, obj) },
		UpdateFunc: func(old, obj any) {
			if !equivalent(old, obj) {
				notify(zone.OpUpsert, obj)
			}
		},
		DeleteFunc: func(obj any) { notify(zone.OpDelete, obj) },
	}
	for _, inf := range w.informers() {
		if err := inf.SetTransform(shrinkReusing(inf.GetStore())); err != nil {
			cancel()
			return nil, fmt.Errorf("kube: set informer transform: %w", err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(k.watchError); err != nil {
			cancel()
			return nil, fmt.Errorf("kube: set watch error handler: %w", err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			cancel()
			return nil, fmt.Errorf("kube: add event handler: %w", err)
		}
	}
	for _, f := range w.factories {
		f.Start(ctx.Done())
	}
	k.sets.Add(1)
	return w, nil
}

// waitSynced waits until the set's informers synced or ctx ends.
func (w *watchSet) waitSynced(ctx context.Context) bool {
	var synced []cache.InformerSynced
	for _, inf := range w.informers() {
		synced = append(synced, inf.HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}

func (w *watchSet) stop() {
	w.cancel()
	for _, f := range w.factories {
		f.Shutdown()
	}
}

// Run starts the informers, waits for their first sync, hands sink what
// they hold (Replace), then every change (Apply) until ctx is done. It
// returns an error only when ctx ends before the caches synced.
func (k *Source) Run(ctx context.Context, sink zone.Sink) error {
	w, err := k.startWatchSet(ctx, sink)
	if err != nil {
		return err
	}
	if !w.waitSynced(ctx) {
		w.stop()
		return fmt.Errorf("kube: informers did not sync: %w", context.Cause(ctx))
	}
	k.makeCurrent(w, sink)
	k.setUp(true)
	k.probeLoop(ctx, sink)
	k.current.Load().stop()
	return nil
}

// probeLoop probes the API server until ctx is done, and relists through a
// fresh watch set when the server comes back after an outage.
func (k *Source) probeLoop(ctx context.Context, sink zone.Sink) {
	interval := k.ProbeInterval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	probe := k.Probe
	if probe == nil {
		probe = func(ctx context.Context) error { return CheckReachable(ctx, k.Client, min(interval, 5*time.Second)) }
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	up := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := probe(ctx)
		switch {
		case err != nil && up:
			up = false
			// Counted before the gauge drops, so that whoever sees the
			// source down also sees the error.
			if k.Metrics != nil {
				k.Metrics.SourceErrors.WithLabelValues("kubernetes").Inc()
			}
			k.setUp(false)
			if k.Log != nil {
				k.Log.Warn("Kubernetes API server unreachable; serving the last zone", "err", err)
			}
		case err == nil && !up:
			if k.relist(ctx, sink, 2*time.Minute) {
				up = true
				k.setUp(true)
			}
		}
	}
}

// relist starts a fresh watch set and makes it current once synced, handing
// sink its complete view: what went during the outage is deleted. On
// failure the old set stays and false is returned.
func (k *Source) relist(ctx context.Context, sink zone.Sink, timeout time.Duration) bool {
	w, err := k.startWatchSet(ctx, sink)
	if err != nil {
		return false
	}
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !w.waitSynced(syncCtx) {
		w.stop()
		return false
	}
	old := k.makeCurrent(w, sink)
	old.stop()
	if k.Log != nil {
		k.Log.Info("Kubernetes API server reachable again; relisted Services and EndpointSlices")
	}
	return true
}

func (k *Source) setUp(up bool) {
	if k.Metrics == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	k.Metrics.SourceUp.Set(v)
}

func (k *Source) watchError(ctx context.Context, r *cache.Reflector, err error) {
	if k.Metrics != nil {
		k.Metrics.SourceErrors.WithLabelValues("kubernetes").Inc()
	}
	if k.Log != nil {
		k.Log.Warn("watch failed; serving the last zone while retrying", "err", err)
	}
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

// makeCurrent makes w the set whose events reach sink, hands sink what w
// holds, and returns the set it replaces (nil at first). An event of w
// queued meanwhile reaches sink after the list; a repeated upsert or delete
// is harmless.
func (k *Source) makeCurrent(w *watchSet, sink zone.Sink) *watchSet {
	k.handoff.Lock()
	defer k.handoff.Unlock()
	old := k.current.Swap(w)
	if w.nodes != nil {
		sink.Apply(k.relistNodes(w)...)
	}
	sink.Replace(w.list())
	return old
}

// relistNodes returns the changes that make the Nodes the sink holds
// those w holds: deletes of the others, upserts of these. The caller
// holds handoff.
func (k *Source) relistNodes(w *watchSet) []zone.Change {
	listed := w.nodes.GetStore().List()
	now := make(map[string]bool, len(listed))
	changes := make([]zone.Change, 0, len(listed))
	for _, o := range listed {
		if n, ok := o.(*zone.ClusterNode); ok {
			now[n.Name] = true
			changes = append(changes, zone.NodeChange(zone.OpUpsert, n))
		}
	}
	for name := range k.nodesHeld {
		if !now[name] {
			changes = append(changes, zone.NodeChange(zone.OpDelete, &zone.ClusterNode{Name: name}))
		}
	}
	k.nodesHeld = now
	return changes
}

// holdNode keeps nodesHeld current with a change handed to the sink. The
// caller holds handoff.
func (k *Source) holdNode(c zone.Change) {
	switch {
	case c.Kind != zone.ObjectNode:
	case c.Op == zone.OpDelete:
		delete(k.nodesHeld, c.Node.Name)
	case k.nodesHeld == nil:
		k.nodesHeld = map[string]bool{c.Node.Name: true}
	default:
		k.nodesHeld[c.Node.Name] = true
	}
}

// list returns what the set's informers hold.
func (w *watchSet) list() ([]*zone.Service, []*zone.EndpointSlice) {
	var svcs []*zone.Service
	for _, o := range w.services.GetStore().List() {
		if s, ok := o.(*zone.Service); ok {
			svcs = append(svcs, s)
		}
	}
	var slices []*zone.EndpointSlice
	for _, o := range w.slices.GetStore().List() {
		if s, ok := o.(*zone.EndpointSlice); ok {
			slices = append(slices, s)
		}
	}
	return svcs, slices
}

// equivalent reports whether an update between two shrunk objects changes
// nothing DNS uses (a new resourceVersion, labels, fields the shrink drops).
func equivalent(old, cur any) bool {
	if old == cur {
		return true
	}
	o, ok := change(zone.OpUpsert, old)
	c, ok2 := change(zone.OpUpsert, cur)
	return ok && ok2 && o.Equivalent(c)
}

// change returns the Change of op on an informer's object: a shrunk object,
// or for a delete the tombstone of one whose deletion the watch missed.
func change(op zone.Op, obj any) (zone.Change, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	obj, _ = shrink(obj)
	switch o := obj.(type) {
	case *zone.Service:
		return zone.ServiceChange(op, o), true
	case *zone.EndpointSlice:
		return zone.SliceChange(op, o), true
	case *zone.ClusterNode:
		return zone.NodeChange(op, o), true
	}
	return zone.Change{}, false
}

// shrinkReusing returns the informers' transform: shrink, then, when the
// cache already holds an object equivalent to the result, that object. An
// update that changes nothing DNS uses then leaves one copy of the object
// (the one the zone holds) instead of two, and its handler sees the same
// object twice. The client-go queue calls it under the lock it processes
// under, so it reads the cache the queue has applied so far; what it
// returns is equivalent to its argument whatever it reads.
func shrinkReusing(cached cache.Store) cache.TransformFunc {
	return func(obj any) (any, error) {
		small, _ := shrink(obj)
		c, ok := change(zone.OpUpsert, small)
		if !ok {
			return small, nil
		}
		k := c.Key()
		key := k.Name // a cluster-scoped object's cache key
		if k.Namespace != "" {
			key = k.Namespace + "/" + k.Name
		}
		old, exists, err := cached.GetByKey(key)
		if err != nil || !exists {
			return small, nil
		}
		if oc, ok := change(zone.OpUpsert, old); ok && oc.Equivalent(c) {
			return old, nil
		}
		return small, nil
	}
}

// shrink turns API objects into small structs. It is idempotent.
func shrink(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return zone.ServiceFromAPI(o), nil
	case *discoveryv1.EndpointSlice:
		return zone.EndpointSliceFromAPI(o), nil
	case *corev1.Node:
		return zone.ClusterNodeFromAPI(o), nil
	default:
		return obj, nil
	}
}

// CheckReachable asks the API server for its version, so that a wrong
// kubeconfig fails at start with a clear error instead of an unready server.
func CheckReachable(ctx context.Context, client kubernetes.Interface, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.Discovery().ServerVersion()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kube: cannot reach the Kubernetes API server: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kube: no answer from the Kubernetes API server within %v: %w", timeout, ctx.Err())
	}
}

// NodesReadable reports whether client may list Nodes: false, with no
// error, when the API server forbids it (RBAC without the nodes rule, as
// an install from before client location has), so that the caller can
// serve without locations instead of never syncing. Any other failure is
// an error.
func NodesReadable(ctx context.Context, client kubernetes.Interface) (bool, error) {
	_, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsForbidden(err):
		return false, nil
	default:
		return false, fmt.Errorf("kube: listing nodes: %w", err)
	}
}
