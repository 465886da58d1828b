//go:build e2e

// Package e2e holds hdns end-to-end tests against a real control plane
// (see package harness). Run them with test/e2e/run.sh.
package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// TestControlPlane checks the harness itself: the EndpointSlice controller
// publishes the harness's "ready" pods with their hostnames, follows
// readiness changes, serves dual-stack pods, and the API server survives a
// stop/start cycle.
func TestControlPlane(t *testing.T) {
	cp := harness.Start(t, harness.Options{})
	const ns = "awx"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	if _, err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	createService(ctx, t, cp, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-headless"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{
				Name: "nginx-web-headless", Port: 30088, TargetPort: intstr.FromInt32(80),
			}},
		},
	})
	want := map[string]string{ // IP -> hostname
		"10.244.217.10": "web-0",
		"10.244.194.67": "web-1",
		"10.244.217.11": "web-2",
	}
	for i, ip := range []string{"10.244.217.10", "10.244.194.67", "10.244.217.11"} {
		name := fmt.Sprintf("web-%d", i)
		if _, err := cp.CreateReadyPod(ctx, ns, harness.PodOptions{
			Name: name, Labels: map[string]string{"app": "web"},
			Hostname: name, Subdomain: "web-headless", IPv4: ip,
		}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("ReadyEndpoints", func(t *testing.T) {
		waitEndpoints(ctx, t, cp, ns, "web-headless", func(ip string) (string, bool, bool) {
			h, ok := want[ip]
			return h, true, ok
		}, len(want))
	})

	t.Run("UnreadyEndpoint", func(t *testing.T) {
		if err := cp.SetPodReady(ctx, ns, "web-1", false); err != nil {
			t.Fatal(err)
		}
		waitEndpoints(ctx, t, cp, ns, "web-headless", func(ip string) (string, bool, bool) {
			h, ok := want[ip]
			return h, ip != "10.244.194.67", ok
		}, len(want))
	})

	t.Run("DualStack", func(t *testing.T) {
		policy := corev1.IPFamilyPolicyRequireDualStack
		createService(ctx, t, cp, ns, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "dual-headless"},
			Spec: corev1.ServiceSpec{
				ClusterIP:      corev1.ClusterIPNone,
				IPFamilyPolicy: &policy,
				Selector:       map[string]string{"app": "dual"},
				Ports:          []corev1.ServicePort{{Name: "http", Port: 80}},
			},
		})
		if _, err := cp.CreateReadyPod(ctx, ns, harness.PodOptions{
			Name: "dual-0", Labels: map[string]string{"app": "dual"},
			Hostname: "dual-0", Subdomain: "dual-headless",
			IPv4: "10.244.1.5", IPv6: "fd00:10:244::5",
		}); err != nil {
			t.Fatal(err)
		}
		waitEndpoints(ctx, t, cp, ns, "dual-headless", func(ip string) (string, bool, bool) {
			return "dual-0", true, ip == "10.244.1.5" || ip == "fd00:10:244::5"
		}, 2)
	})

	t.Run("APIServerRestart", func(t *testing.T) {
		begin := time.Now()
		if err := cp.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		stopped := time.Since(begin)
		shortCtx, cancelShort := context.WithTimeout(ctx, 2*time.Second)
		_, err := cp.Client.CoreV1().Namespaces().Get(shortCtx, ns, metav1.GetOptions{})
		cancelShort()
		if err == nil {
			t.Fatal("API request succeeded while the API server was stopped")
		}
		begin = time.Now()
		if err := cp.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("API server stopped in %v, restarted in %v", stopped.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		// State survived (same etcd) and the existing client works again.
		if _, err := cp.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			t.Fatalf("get namespace after restart: %v", err)
		}
		// The controller manager reconnects and keeps reconciling.
		if err := cp.SetPodReady(ctx, ns, "web-1", true); err != nil {
			t.Fatal(err)
		}
		waitEndpoints(ctx, t, cp, ns, "web-headless", func(ip string) (string, bool, bool) {
			h, ok := want[ip]
			return h, true, ok
		}, len(want))
	})
}

// createService creates svc in ns or fails the test.
func createService(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns string, svc *corev1.Service) {
	t.Helper()
	if _, err := cp.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service %s/%s: %v", ns, svc.Name, err)
	}
}

// waitEndpoints waits until the Service's EndpointSlices hold exactly n
// endpoints, each with one address for which expect returns ok, the
// expected hostname and the expected ready condition.
func waitEndpoints(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns, svc string,
	expect func(ip string) (hostname string, ready, ok bool), n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	begin := time.Now()
	slices, err := cp.WaitForEndpointSlices(ctx, ns, svc, func(slices []discoveryv1.EndpointSlice) bool {
		count := 0
		for _, s := range slices {
			for _, ep := range s.Endpoints {
				if len(ep.Addresses) != 1 || ep.Hostname == nil || ep.Conditions.Ready == nil {
					return false
				}
				host, ready, ok := expect(ep.Addresses[0])
				if !ok || *ep.Hostname != host || *ep.Conditions.Ready != ready {
					return false
				}
				if ep.NodeName == nil || *ep.NodeName != harness.NodeName {
					return false
				}
				count++
			}
		}
		return count == n
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s/%s after %v: %s", ns, svc, time.Since(begin).Round(time.Millisecond), harness.DescribeSlices(slices))
}
