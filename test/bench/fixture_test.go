//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// The benchmarks' objects are headless Services without selectors and
// EndpointSlices written directly, as a controller would write them (up to
// 100 endpoints per slice, like the EndpointSlice controller's default),
// labelled with a manager of their own so that no controller touches them.
// That is how selector-less Services get endpoints in real clusters too,
// and it creates 50k endpoints in seconds instead of the minutes 50k pods
// would take on two cores. Propagation (TestPropagation) uses real pods
// and the real EndpointSlice controller instead.

const (
	// policyAnnotation is hdns's per-Service policy annotation.
	policyAnnotation = "hdns.dev/policy"
	// managedBy marks the EndpointSlices this package writes.
	managedBy = "bench.hdns.dev"
	// sliceSize is the number of endpoints per EndpointSlice.
	sliceSize = 100
	// portName is every Service's and endpoint's one named port (TCP 80).
	portName = "http"
)

// endpoint is one ready IPv4 endpoint.
type endpoint struct {
	host string // EndpointSlice hostname; empty for none
	pod  string // targetRef Pod name; empty for none
	node string
	ip   netip.Addr
}

// service is a headless Service and its endpoints.
type service struct {
	ns, name    string
	annotations map[string]string
	eps         []endpoint
}

// fqdn is the Service's name in zone.
func (s service) fqdn() string { return s.name + "." + s.ns + ".svc." + zone }

// ipOf returns the i-th endpoint address: 10.64.0.1 onwards, skipping
// .0 and .255 in the last octet.
func ipOf(i int) netip.Addr {
	n := i/254*256 + i%254 + 1
	return netip.AddrFrom4([4]byte{10, byte(64 + n>>16), byte(n >> 8), byte(n)})
}

// fastClient is a clientset on cp without client-side rate limits worth
// mentioning, for bulk creation and the churn's writes. It speaks
// protobuf, as controllers do: cheaper for the API server than JSON.
func fastClient(t testing.TB, cp *harness.ControlPlane) kubernetes.Interface {
	t.Helper()
	cfg := *cp.Config
	cfg.QPS, cfg.Burst = 5000, 10000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	c, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// parallel runs jobs on workers goroutines and returns the first error.
func parallel(workers int, jobs []func() error) error {
	ch := make(chan func() error)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range ch {
				if err := job(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range jobs {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		ch <- j
	}
	close(ch)
	wg.Wait()
	return first
}

// createNamespaces creates the namespaces (without waiting for their
// ServiceAccounts: nothing here creates pods).
func createNamespaces(ctx context.Context, c kubernetes.Interface, names []string) error {
	var jobs []func() error
	for _, n := range names {
		jobs = append(jobs, func() error {
			_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create namespace %s: %w", n, err)
			}
			return nil
		})
	}
	return parallel(8, jobs)
}

// createServices writes every Service of svcs and its EndpointSlices.
func createServices(ctx context.Context, c kubernetes.Interface, svcs []service) error {
	var jobs []func() error
	for _, s := range svcs {
		jobs = append(jobs, func() error {
			if _, err := c.CoreV1().Services(s.ns).Create(ctx, headlessService(s), metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create service %s/%s: %w", s.ns, s.name, err)
			}
			for i := 0; i < len(s.eps); i += sliceSize {
				sl := endpointSlice(s, i/sliceSize, s.eps[i:min(i+sliceSize, len(s.eps))])
				if _, err := c.DiscoveryV1().EndpointSlices(s.ns).Create(ctx, sl, metav1.CreateOptions{}); err != nil {
					return fmt.Errorf("create endpointslice %s/%s: %w", s.ns, sl.Name, err)
				}
			}
			return nil
		})
	}
	return parallel(16, jobs)
}

// createFixture creates the namespaces and Services of svcs from the
// from-th on, with their EndpointSlices (those before exist), and returns
// the number of namespaces of svcs.
func createFixture(t testing.TB, ctx context.Context, c kubernetes.Interface, svcs []service, from int) int {
	t.Helper()
	nss := map[string]bool{}
	for _, s := range svcs[:from] {
		nss[s.ns] = true
	}
	var fresh []string
	for _, s := range svcs[from:] {
		if !nss[s.ns] {
			nss[s.ns] = true
			fresh = append(fresh, s.ns)
		}
	}
	if err := createNamespaces(ctx, c, fresh); err != nil {
		t.Fatal(err)
	}
	if err := createServices(ctx, c, svcs[from:]); err != nil {
		t.Fatal(err)
	}
	return len(nss)
}

// headlessService is s's Service object, without a selector.
func headlessService(s service) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, Annotations: s.annotations},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Ports:     []corev1.ServicePort{{Name: portName, Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
}

// endpointSlice is the n-th slice of s holding eps, shaped as the
// EndpointSlice controller writes them.
func endpointSlice(s service, n int, eps []endpoint) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s-%d", s.name, n),
			Namespace: s.ns,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: s.name,
				discoveryv1.LabelManagedBy:   managedBy,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new(portName), Port: new(int32(80)), Protocol: new(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{
			Addresses:  []string{e.ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)},
		}
		if e.host != "" {
			ep.Hostname = new(e.host)
		}
		if e.node != "" {
			ep.NodeName = new(e.node)
		}
		if e.pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: s.ns, Name: e.pod,
				UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012x", e.ip.As4()))}
		}
		sl.Endpoints = append(sl.Endpoints, ep)
	}
	return sl
}

// zoneFile renders svcs as a cluster.local zone for Knot with the records
// hdns and CoreDNS answer for them: the Service's A records, one A record
// per endpoint hostname and the SRV records of the named port.
func zoneFile(svcs []service) string {
	var b strings.Builder
	b.WriteString(`$ORIGIN cluster.local.
$TTL 5
@       30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5
@       30 IN NS  ns.dns.cluster.local.
ns.dns  30 IN A   10.96.0.10
dns-version IN TXT "1.1.0"
`)
	for _, s := range svcs {
		owner := s.name + "." + s.ns + ".svc"
		for _, e := range s.eps {
			fmt.Fprintf(&b, "%s IN A %s\n", owner, e.ip)
		}
		for _, e := range s.eps {
			if e.host != "" {
				fmt.Fprintf(&b, "%s.%s IN A %s\n", e.host, owner, e.ip)
			}
		}
		for _, e := range s.eps {
			target := e.host
			if target == "" {
				target = strings.ReplaceAll(e.ip.String(), ".", "-")
				fmt.Fprintf(&b, "%s.%s IN A %s\n", target, owner, e.ip)
			}
			fmt.Fprintf(&b, "_%s._tcp.%s IN SRV 0 %d 80 %s.%s.%s\n", portName, owner, 100/len(s.eps), target, owner, zone)
		}
	}
	return b.String()
}
