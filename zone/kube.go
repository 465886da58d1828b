package zone

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// KubeSource watches Services and EndpointSlices through the API server.
// Its informers store only the small structs of this package.
type KubeSource struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// Namespace limits the watch to one namespace; "" watches all.
	Namespace string
	// LabelSelector limits which Services are served; "" serves all.
	// EndpointSlices are watched in full and joined to the Services kept.
	LabelSelector string
	// Log receives watch errors; nil logs nowhere.
	Log *slog.Logger
	// Metrics counts watch errors; nil counts nowhere.
	Metrics *Metrics

	services, slices cache.SharedIndexInformer
	synced           atomic.Bool // set once by Run, after the caches synced
}

// Run starts the informers, waits for their first sync, then calls changed
// after every change until ctx is done. It returns an error only when ctx
// ends before the caches synced.
func (k *KubeSource) Run(ctx context.Context, changed func()) error {
	svcFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0,
		informers.WithNamespace(k.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = k.LabelSelector }))
	sliceFactory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0, informers.WithNamespace(k.Namespace))
	k.services = svcFactory.Core().V1().Services().Informer()
	k.slices = sliceFactory.Discovery().V1().EndpointSlices().Informer()

	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.notify(changed) },
		UpdateFunc: func(any, any) { k.notify(changed) },
		DeleteFunc: func(any) { k.notify(changed) },
	}
	for _, inf := range []cache.SharedIndexInformer{k.services, k.slices} {
		if err := inf.SetTransform(shrink); err != nil {
			return fmt.Errorf("zone: set informer transform: %w", err)
		}
		if err := inf.SetWatchErrorHandlerWithContext(k.watchError); err != nil {
			return fmt.Errorf("zone: set watch error handler: %w", err)
		}
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("zone: add event handler: %w", err)
		}
	}
	svcFactory.Start(ctx.Done())
	sliceFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), k.services.HasSynced, k.slices.HasSynced) {
		return fmt.Errorf("zone: informers did not sync: %w", context.Cause(ctx))
	}
	k.synced.Store(true)
	changed()
	<-ctx.Done()
	svcFactory.Shutdown()
	sliceFactory.Shutdown()
	return nil
}

// notify forwards events once the caches are complete; events of the
// initial list are covered by the call Run makes after sync.
func (k *KubeSource) notify(changed func()) {
	if k.synced.Load() {
		changed()
	}
}

func (k *KubeSource) watchError(ctx context.Context, r *cache.Reflector, err error) {
	if k.Metrics != nil {
		k.Metrics.SourceErrors.WithLabelValues("kubernetes").Inc()
	}
	if k.Log != nil {
		k.Log.Warn("watch failed; serving the last zone while retrying", "err", err)
	}
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

// List implements ListFunc. It reports complete only after the informers
// have synced.
func (k *KubeSource) List() ([]*Service, []*EndpointSlice, bool) {
	if !k.synced.Load() {
		return nil, nil, false
	}
	var svcs []*Service
	for _, o := range k.services.GetStore().List() {
		if s, ok := o.(*Service); ok {
			svcs = append(svcs, s)
		}
	}
	var slices []*EndpointSlice
	for _, o := range k.slices.GetStore().List() {
		if s, ok := o.(*EndpointSlice); ok {
			slices = append(slices, s)
		}
	}
	return svcs, slices, true
}

// shrink is the informers' transform: API objects become small structs
// before they reach the cache. It is idempotent.
func shrink(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return ServiceFromAPI(o), nil
	case *discoveryv1.EndpointSlice:
		return EndpointSliceFromAPI(o), nil
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
			return fmt.Errorf("zone: cannot reach the Kubernetes API server: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("zone: no answer from the Kubernetes API server within %v: %w", timeout, ctx.Err())
	}
}
