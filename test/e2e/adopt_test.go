//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hdns-dev/hdns/adopt"
	"github.com/hdns-dev/hdns/internal/kubeyaml"
	"github.com/hdns-dev/hdns/internal/testproc"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// adoptTimeout bounds how long an annotation change takes to reach
// CoreDNS's answers here: hdns's informer, the Keeper's 1 s coalescing, the
// test's 100 ms ConfigMap sync and CoreDNS's reload (every 2 s ± 1 s),
// with room for a loaded machine.
const adoptTimeout = 30 * time.Second

// TestAdoptCoreDNS proves adoption without renaming on the real control
// plane, with the real hdns binary and a real CoreDNS whose kubernetes
// plugin serves cluster.local from the same API server, as a cluster's
// does: annotating a headless Service with hdns.dev/policy gives its
// usual name, asked of CoreDNS, hdns's answer (first=1: one address where
// CoreDNS's own answer has four), removing the annotation gives CoreDNS's
// answer back, and another Service's name is CoreDNS's throughout. hdns
// runs as the base's ServiceAccount with deploy/coredns's RBAC and no
// more, and with --default-policy first=2, so that an unannotated name that
// still reached hdns would get two addresses, neither CoreDNS's four (web)
// or three (other) nor the annotated one.
func TestAdoptCoreDNS(t *testing.T) {
	bin := corednsBinary(t)
	cp := harness.Start(t, harness.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const ns = "adopt"
	if _, err := cp.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	webIPs, otherIPs := adoptBackends(ctx, t, cp, ns)

	kubeconfig, cmRef := adoptServiceAccount(ctx, t, cp)
	cmNamespace, cmName, _ := strings.Cut(cmRef, "/")
	hdnsPort, corednsPort := testproc.FreePort(t), testproc.FreePort(t)
	hdnsAddr := "127.0.0.1:" + strconv.Itoa(hdnsPort)
	h := startHDNS(t, "--kubeconfig", kubeconfig, "--listen", hdnsAddr, "--default-policy", "first=2",
		"--coredns-configmap", cmRef, "--coredns-forward", hdnsAddr, "--coredns-port", strconv.Itoa(corednsPort))

	dir := t.TempDir()
	importDir := filepath.Join(dir, "hdns")
	if err := os.Mkdir(importDir, 0o755); err != nil {
		t.Fatal(err)
	}
	go syncConfigMap(ctx, t, cp, cmNamespace, cmName, importDir)
	// Like a cluster's: no bind, so that the imported blocks, which name
	// none, join the same listener.
	corefile := fmt.Sprintf(`.:%d {
    errors
    kubernetes cluster.local {
        kubeconfig %s
    }
    reload 2s 1s
}
import hdns/*.server
`, corednsPort, cp.KubeconfigPath)
	coreDNS := "127.0.0.1:" + strconv.Itoa(corednsPort)
	runCoreDNS(t, bin, dir, corefile, "CoreDNS answering on "+coreDNS, func() (bool, string) {
		_, err := goLookup(context.Background(), netip.Addr{}, coreDNS, "kubernetes.default.svc.cluster.local.")
		return err == nil, fmt.Sprint(err)
	})

	web, other := "web."+ns+".svc.cluster.local.", "other."+ns+".svc.cluster.local."
	lookup := func(name string) ([]string, error) { return goLookup(ctx, netip.Addr{}, coreDNS, name) }
	awaitAnswers := func(what, name string, ok func([]string) bool) time.Duration {
		t.Helper()
		begin := time.Now()
		awaitCond(t, what, adoptTimeout, func() (bool, string) {
			got, err := lookup(name)
			return err == nil && ok(got), fmt.Sprintf("%s via CoreDNS: %v %v", name, got, err)
		})
		return time.Since(begin)
	}
	all := func(want []string) func([]string) bool {
		return func(got []string) bool { return slices.Equal(got, want) }
	}
	oneOf := func(got []string) bool { return len(got) == 1 && slices.Contains(webIPs, got[0]) }
	otherIsCoreDNSs := func() {
		t.Helper()
		if got, err := lookup(other); err != nil || !slices.Equal(got, otherIPs) {
			t.Errorf("%s via CoreDNS: %v %v, want CoreDNS's own %v", other, got, err, otherIPs)
		}
	}

	awaitAnswers("CoreDNS's own answer for web before the annotation", web, all(webIPs))
	otherIsCoreDNSs()

	annotate(ctx, t, cp, ns, "web", `{"metadata":{"annotations":{"hdns.dev/policy":"first=1"}}}`)
	took := awaitAnswers("hdns's answer (first=1) for web through CoreDNS", web, oneOf)
	t.Logf("annotated → CoreDNS answers %s with hdns's answer in %v", web, took.Round(10*time.Millisecond))
	for range 5 {
		if got, err := lookup(web); err != nil || !oneOf(got) {
			t.Fatalf("%s via CoreDNS after adoption: %v %v, want one of %v", web, got, err, webIPs)
		}
	}
	otherIsCoreDNSs()
	want := fmt.Sprintf("web.%s.svc.cluster.local:%d {\n    forward . %s\n}\n", ns, corednsPort, hdnsAddr)
	if got := configMapKey(ctx, t, cp, cmNamespace, cmName); !strings.HasSuffix(got, want) || strings.Count(got, "{") != 1 {
		t.Errorf("ConfigMap key %s:\n%s\nwant exactly one block:\n%s", adopt.DataKey, got, want)
	}

	annotate(ctx, t, cp, ns, "web", `{"metadata":{"annotations":{"hdns.dev/policy":null}}}`)
	took = awaitAnswers("CoreDNS's own answer for web after the annotation is gone", web, all(webIPs))
	t.Logf("annotation removed → CoreDNS answers %s itself again in %v", web, took.Round(10*time.Millisecond))
	otherIsCoreDNSs()
	if got := configMapKey(ctx, t, cp, cmNamespace, cmName); strings.Contains(got, "{") {
		t.Errorf("ConfigMap key %s still holds a block after CoreDNS dropped it:\n%s", adopt.DataKey, got)
	}
	if strings.Contains(strings.ToLower(h.output()), "forbidden") {
		t.Errorf("hdns as the ServiceAccount logged a Forbidden error:\n%s", h.output())
	}
}

// adoptServiceAccount applies the base's Namespace and RBAC and
// deploy/coredns/rbac.yaml, and returns a kubeconfig with a token of the
// base's ServiceAccount, which hdns runs as, and the ConfigMap the
// component's patch names in --coredns-configmap: hdns must write it with
// exactly the component's rights, which must not reach another ConfigMap.
func adoptServiceAccount(ctx context.Context, t *testing.T, cp *harness.ControlPlane) (kubeconfig, configMap string) {
	t.Helper()
	component, err := os.ReadFile(filepath.Join(deployDir, "coredns", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`--coredns-configmap=(\S+)`).FindSubmatch(component)
	if m == nil {
		t.Fatal("deploy/coredns/kustomization.yaml sets no --coredns-configmap=NAMESPACE/NAME")
	}
	configMap = string(m[1])
	var objs []*unstructured.Unstructured
	for _, f := range []string{"namespace.yaml", "rbac.yaml", filepath.Join("coredns", "rbac.yaml")} {
		o, err := kubeyaml.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	cfg, warnings := rest.CopyConfig(cp.Config), &warningRecorder{}
	cfg.WarningHandler = warnings
	(&env{ctx: ctx, cp: cp}).applyAll(t, cfg, warnings, objs, false)

	tr, err := cp.Client.CoreV1().ServiceAccounts(deployNamespace).CreateToken(ctx, "hdns", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for ServiceAccount %s/hdns: %v", deployNamespace, err)
	}
	kubeconfig = filepath.Join(t.TempDir(), "hdns-sa.kubeconfig")
	if err := writeTokenKubeconfig(kubeconfig, cp.APIServerURL, cp.Config.CAData, tr.Status.Token); err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(&rest.Config{Host: cp.APIServerURL, BearerToken: tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.Config.CAData}})
	if err != nil {
		t.Fatal(err)
	}
	ns, _, _ := strings.Cut(configMap, "/")
	if _, err := sa.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get ConfigMap %s/kube-root-ca.crt as hdns: %v, want Forbidden", ns, err)
	}
	if _, err := sa.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list ConfigMaps in %s as hdns: %v, want Forbidden", ns, err)
	}
	return kubeconfig, configMap
}

// adoptBackends creates the headless Services web (four ready pods) and
// other (three) in ns, waits for their endpoints, and returns their sorted
// addresses.
func adoptBackends(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns string) (web, other []string) {
	t.Helper()
	var pods []harness.PodOptions
	for i := range 4 {
		web = append(web, fmt.Sprintf("10.244.70.%d", 10+i))
		pods = append(pods, harness.PodOptions{Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": "web"}, IPv4: web[i]})
	}
	for i := range 3 {
		other = append(other, fmt.Sprintf("10.244.71.%d", 10+i))
		pods = append(pods, harness.PodOptions{Name: fmt.Sprintf("other-%d", i), Labels: map[string]string{"app": "other"}, IPv4: other[i]})
	}
	createService(ctx, t, cp, ns, headless("web", corev1.ServicePort{Name: "http", Port: 80}))
	createService(ctx, t, cp, ns, headless("other", corev1.ServicePort{Name: "http", Port: 80}))
	if err := createPods(ctx, cp, ns, pods, 4); err != nil {
		t.Fatal(err)
	}
	return web, other
}

// annotate merge-patches the Service ns/name with patch.
func annotate(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns, name, patch string) {
	t.Helper()
	if _, err := cp.Client.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch Service %s/%s: %v", ns, name, err)
	}
}

// configMapKey returns the key hdns writes in the ConfigMap ns/name.
func configMapKey(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns, name string) string {
	t.Helper()
	cm, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get ConfigMap %s/%s: %v", ns, name, err)
	}
	return cm.Data[adopt.DataKey]
}

// syncConfigMap plays the kubelet's part, which this control plane has
// none of: in a cluster the ConfigMap is a volume of the CoreDNS Pods and
// the kubelet swaps its files in atomically within its sync period (about a
// minute); here the ConfigMap's keys are copied into dir every 100 ms, each
// written to a temporary file and renamed into place, and files of keys
// that are gone are removed. It returns when ctx is done.
func syncConfigMap(ctx context.Context, t *testing.T, cp *harness.ControlPlane, ns, name, dir string) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cm, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue // not written yet, or ctx ended
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if _, ok := cm.Data[e.Name()]; !ok && !strings.HasPrefix(e.Name(), ".") {
				os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		for k, v := range cm.Data {
			path := filepath.Join(dir, k)
			if old, err := os.ReadFile(path); err == nil && string(old) == v {
				continue
			}
			tmp := filepath.Join(dir, ".tmp-"+k)
			if err := os.WriteFile(tmp, []byte(v), 0o644); err != nil {
				t.Errorf("kubelet sync: %v", err)
				return
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Errorf("kubelet sync: %v", err)
				return
			}
		}
	}
}
