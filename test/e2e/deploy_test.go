//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/hdns-dev/hdns/internal/kubeyaml"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

const (
	// deployDir is deploy/, relative to this package's directory (go test's
	// working directory).
	deployDir = "../../deploy"
	// deployNamespace is where the base puts hdns.
	deployNamespace = "hdns"
	fieldManager    = "hdns-e2e"
)

// requiredKinds are the objects the base must hold, once each.
var requiredKinds = []string{
	"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
	"Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy",
}

// deploy applies deploy/ to the real API server with server-side apply and
// strict field validation, checks that the pod template passes the
// namespace's "restricted" Pod Security enforcement, then runs hdns with a
// token of the base's ServiceAccount and the Deployment's own arguments:
// it must sync and answer (the RBAC is enough), and the same token must be
// refused Secrets, Pods and every verb but list/watch (the RBAC is no more).
func (e *env) deploy(t *testing.T) {
	objs, err := kubeyaml.LoadKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
	}
	for _, k := range requiredKinds {
		if n := countOf(kinds, k); n != 1 {
			t.Errorf("deploy/ holds %d objects of kind %s, want 1 (kinds: %v)", n, k, kinds)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(e.cp.Config)
	cfg.WarningHandler = warnings
	applied := e.applyAll(t, cfg, warnings, objs, false)

	dep := &appsv1.Deployment{}
	svc := &corev1.Service{}
	for _, o := range applied {
		var into any
		switch o.GetKind() {
		case "Deployment":
			into = dep
		case "Service":
			into = svc
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
			t.Fatalf("convert applied %s: %v", o.GetKind(), err)
		}
	}
	args := checkDeployment(t, dep, svc)

	t.Run("PodSecurityRestricted", func(t *testing.T) { e.checkPodSecurity(t, cfg, warnings, dep) })
	t.Run("Examples", func(t *testing.T) { e.checkExamples(t, cfg, warnings, args) })
	t.Run("ServiceAccountRBAC", func(t *testing.T) { e.checkServiceAccount(t, args, svc) })
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// warningRecorder collects the API server's warnings (deprecations, Pod
// Security "warn" findings, ...), which would otherwise only be logged.
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns and forgets the warnings recorded so far.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// applyAll server-side applies objs in order (field manager hdns-e2e, force,
// strict field validation; dry run when dryRun) and returns what the API
// server stored. Every rejection or warning fails t.
func (e *env) applyAll(t *testing.T, cfg *rest.Config, warnings *warningRecorder, objs []*unstructured.Unstructured, dryRun bool) []*unstructured.Unstructured {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: new(true), FieldValidation: metav1.FieldValidationStrict}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	warnings.take()
	var out []*unstructured.Unstructured
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		id := fmt.Sprintf("%s %s/%s", gvk.Kind, o.GetNamespace(), o.GetName())
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s: %s is not served by the API server: %v", id, gvk, err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		switch namespaced := mapping.Scope.Name() == meta.RESTScopeNameNamespace; {
		case namespaced && o.GetNamespace() == "":
			t.Errorf("%s: namespaced object without metadata.namespace (the base names its namespace on every object)", id)
			continue
		case namespaced:
			ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
		case o.GetNamespace() != "":
			t.Errorf("%s: cluster-scoped object with a namespace", id)
			continue
		}
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		got, err := ri.Patch(e.ctx, o.GetName(), types.ApplyPatchType, data, opts)
		if err != nil {
			t.Errorf("%s: server-side apply rejected it: %v", id, err)
			continue
		}
		if w := warnings.take(); len(w) > 0 {
			t.Errorf("%s: the API server warned: %s", id, strings.Join(w, "; "))
		}
		t.Logf("applied %s (dry run %t)", id, dryRun)
		out = append(out, got)
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// listenPort returns the port of a host:port flag value such as ":5353".
func listenPort(v string) (int32, error) {
	_, p, err := net.SplitHostPort(v)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", v, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: port: %w", v, err)
	}
	return int32(n), nil
}

// checkDeployment checks what server-side apply cannot: that the
// Deployment's flags, container ports, probes and Service agree, and that
// it has the hardening the base promises. It returns the container's args.
func checkDeployment(t *testing.T, dep *appsv1.Deployment, svc *corev1.Service) []string {
	t.Helper()
	spec := dep.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("Deployment has %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", dep.Spec.Replicas)
	}
	if spec.ServiceAccountName != "hdns" {
		t.Errorf("serviceAccountName %q, want hdns", spec.ServiceAccountName)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container root filesystem is not read-only")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container allows privilege escalation")
	}
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Error("container does not drop ALL capabilities (and add none)")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	if len(spec.TopologySpreadConstraints) == 0 && (spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil) {
		t.Error("no topology spread or pod anti-affinity: both replicas may land on one node")
	}

	port := func(name string) *corev1.ContainerPort {
		for i := range c.Ports {
			if c.Ports[i].Name == name {
				return &c.Ports[i]
			}
		}
		return nil
	}
	listen, httpListen := flagValues(c.Args, "listen"), flagValues(c.Args, "http-listen")
	if len(listen) != 1 || len(httpListen) != 1 {
		t.Fatalf("args %q: want one --listen and one --http-listen", c.Args)
	}
	dnsPort, err := listenPort(listen[0])
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := listenPort(httpListen[0])
	if err != nil {
		t.Fatal(err)
	}
	if dnsPort < 1024 || httpPort < 1024 {
		t.Errorf("--listen %s / --http-listen %s: a privileged port needs a capability the container drops", listen[0], httpListen[0])
	}
	for name, want := range map[string]struct {
		port  int32
		proto corev1.Protocol
	}{"dns": {dnsPort, corev1.ProtocolUDP}, "dns-tcp": {dnsPort, corev1.ProtocolTCP}, "http": {httpPort, corev1.ProtocolTCP}} {
		if p := port(name); p == nil || p.ContainerPort != want.port || p.Protocol != want.proto {
			t.Errorf("container port %q: %+v, want %d/%s (from the flags)", name, p, want.port, want.proto)
		}
	}
	for _, pr := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil || pr.probe.HTTPGet.Path != pr.path ||
			(pr.probe.HTTPGet.Port.String() != "http" && pr.probe.HTTPGet.Port.IntValue() != int(httpPort)) {
			t.Errorf("%s probe %+v: want GET %s on the http port", pr.what, pr.probe, pr.path)
		}
	}

	// The Service: 53 over UDP and TCP onto the DNS ports, and metrics.
	var seen []string
	for _, sp := range svc.Spec.Ports {
		target := port(sp.TargetPort.String())
		if target == nil || target.Protocol != sp.Protocol {
			t.Errorf("Service port %s targets %q, which is no %s container port", sp.Name, sp.TargetPort.String(), sp.Protocol)
			continue
		}
		seen = append(seen, fmt.Sprintf("%d/%s->%d", sp.Port, sp.Protocol, target.ContainerPort))
	}
	wantPorts := []string{fmt.Sprintf("53/UDP->%d", dnsPort), fmt.Sprintf("53/TCP->%d", dnsPort), fmt.Sprintf("%d/TCP->%d", httpPort, httpPort)}
	if !slices.Equal(sorted(seen), sorted(wantPorts)) {
		t.Errorf("Service ports %v, want %v", seen, wantPorts)
	}
	if !labelsMatch(svc.Spec.Selector, dep.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not select the pod template's labels %v", svc.Spec.Selector, dep.Spec.Template.Labels)
	}
	return c.Args
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkPodSecurity creates (dry run) a Pod from the Deployment's template in
// the Deployment's namespace, which must enforce the "restricted" Pod Security
// Standard: it must be admitted without a warning, while the same pod
// without its security settings is refused (so the check has teeth).
func (e *env) checkPodSecurity(t *testing.T, cfg *rest.Config, warnings *warningRecorder, dep *appsv1.Deployment) {
	ns, err := e.cp.Client.CoreV1().Namespaces().Get(e.ctx, dep.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lvl := ns.Labels["pod-security.kubernetes.io/enforce"]; lvl != "restricted" {
		t.Fatalf("namespace %s enforces Pod Security level %q, want restricted", dep.Namespace, lvl)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hdns-pod-security-check", Namespace: dep.Namespace, Labels: dep.Spec.Template.Labels},
		Spec:       *dep.Spec.Template.Spec.DeepCopy(),
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	warnings.take()
	if _, err := client.CoreV1().Pods(dep.Namespace).Create(e.ctx, pod, dry); err != nil {
		t.Errorf("a pod from the Deployment's template is refused: %v", err)
	}
	if w := warnings.take(); len(w) > 0 {
		t.Errorf("a pod from the Deployment's template draws warnings: %s", strings.Join(w, "; "))
	}
	weak := pod.DeepCopy()
	weak.Spec.SecurityContext = nil
	weak.Spec.Containers[0].SecurityContext = nil
	_, err = client.CoreV1().Pods(dep.Namespace).Create(e.ctx, weak, dry)
	if !apierrors.IsForbidden(err) {
		t.Errorf("a pod without security settings: %v, want Forbidden by Pod Security admission", err)
	}
	warnings.take()
}

// checkExamples applies the example Pod (dry run) and checks that the
// CoreDNS stub-domain example forwards a zone the Deployment serves.
func (e *env) checkExamples(t *testing.T, cfg *rest.Config, warnings *warningRecorder, args []string) {
	pods, err := kubeyaml.ReadFile(filepath.Join(deployDir, "examples", "pod-dnsconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applied := e.applyAll(t, cfg, warnings, pods, true)
	if len(applied) != 1 || applied[0].GetKind() != "Pod" {
		t.Fatalf("pod-dnsconfig.yaml: want one Pod, got %d objects", len(applied))
	}
	pod := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(applied[0].Object, pod); err != nil {
		t.Fatal(err)
	}
	if pod.Spec.DNSPolicy != corev1.DNSNone || pod.Spec.DNSConfig == nil || len(pod.Spec.DNSConfig.Nameservers) == 0 {
		t.Errorf("example pod: dnsPolicy %q dnsConfig %+v, want None with nameservers", pod.Spec.DNSPolicy, pod.Spec.DNSConfig)
	}

	corefile, err := os.ReadFile(filepath.Join(deployDir, "examples", "Corefile.stub-domain"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?m)^([a-z0-9.-]+):53 \{$`).FindSubmatch(corefile)
	fwd := regexp.MustCompile(`(?m)^\s+forward \. (\S+)$`).FindSubmatch(corefile)
	if block == nil || fwd == nil {
		t.Fatalf("Corefile.stub-domain: want a `ZONE:53 {` block with `forward . ADDRESS`:\n%s", corefile)
	}
	zones := flagValues(args, "zone")
	if !slices.Contains(zones, string(block[1])) {
		t.Errorf("Corefile.stub-domain forwards %s, which the Deployment does not serve (--zone %v)", block[1], zones)
	}
	if _, err := netip.ParseAddr(string(fwd[1])); err != nil {
		t.Errorf("Corefile.stub-domain: forward target %q is not an address: %v", fwd[1], err)
	}
}

// checkServiceAccount runs hdns as the base's ServiceAccount and checks
// that this identity can do what hdns needs and nothing more.
func (e *env) checkServiceAccount(t *testing.T, deployArgs []string, svc *corev1.Service) {
	tr, err := e.cp.Client.CoreV1().ServiceAccounts(deployNamespace).CreateToken(e.ctx, "hdns", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for ServiceAccount %s/hdns: %v", deployNamespace, err)
	}
	saConfig := &rest.Config{
		Host:            e.cp.APIServerURL,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.cp.Config.CAData},
		Timeout:         e.cp.Config.Timeout,
	}
	sa, err := kubernetes.NewForConfig(saConfig)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing more: real calls...
	if _, err := sa.CoreV1().Secrets("").List(e.ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list Secrets in all namespaces as hdns: %v, want Forbidden", err)
	}
	if _, err := sa.CoreV1().Secrets(deployNamespace).List(e.ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list Secrets in %s as hdns: %v, want Forbidden", deployNamespace, err)
	}
	if _, err := sa.CoreV1().Pods("").List(e.ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list Pods as hdns: %v, want Forbidden", err)
	}
	// ... and the authorizer's verdict on each verb.
	type access struct {
		verb, group, resource, namespace string
		allowed                          bool
	}
	for _, a := range []access{
		{"list", "", "services", "", true},
		{"watch", "", "services", "", true},
		{"list", "discovery.k8s.io", "endpointslices", "", true},
		{"watch", "discovery.k8s.io", "endpointslices", "", true},
		{"list", "", "nodes", "", true},
		{"watch", "", "nodes", "", true},
		{"get", "", "nodes", "", false},
		{"update", "", "nodes", "", false},
		{"get", "", "services", "awx", false},
		{"create", "", "services", "awx", false},
		{"update", "", "services", "awx", false},
		{"delete", "", "services", "awx", false},
		{"get", "discovery.k8s.io", "endpointslices", "awx", false},
		{"create", "discovery.k8s.io", "endpointslices", "awx", false},
		{"list", "", "pods", "", false},
		{"list", "", "secrets", "", false},
		{"get", "", "secrets", deployNamespace, false},
		{"list", "", "endpoints", "", false},
		{"list", "", "configmaps", deployNamespace, false},
	} {
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(e.ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectAccessReview: %v", err)
		}
		if r.Status.Allowed != a.allowed {
			t.Errorf("hdns may %s %s.%s in %q: %t, want %t (%s)", a.verb, a.resource, a.group, a.namespace, r.Status.Allowed, a.allowed, r.Status.Reason)
		}
	}

	// Enough: hdns with that token and the Deployment's own flags syncs
	// (startHDNS waits for /readyz) and answers from Services and slices.
	kubeconfig := filepath.Join(t.TempDir(), "hdns-sa.kubeconfig")
	if err := writeTokenKubeconfig(kubeconfig, e.cp.APIServerURL, e.cp.Config.CAData, tr.Status.Token); err != nil {
		t.Fatal(err)
	}
	const ns = "rbac-check"
	e.namespace(t, ns)
	probe := headless("probe", corev1.ServicePort{Name: "http", Port: 80})
	createService(e.ctx, t, e.cp, ns, probe)
	if _, err := e.cp.CreateReadyPod(e.ctx, ns, harness.PodOptions{Name: "probe-0", Labels: probe.Spec.Selector, IPv4: "10.244.77.7"}); err != nil {
		t.Fatal(err)
	}
	args := append(withoutFlags(deployArgs, "listen", "http-listen", "admin-listen"), "--kubeconfig", kubeconfig)
	h := startHDNS(t, args...)
	for _, zone := range flagValues(deployArgs, "zone") {
		name := "probe." + ns + ".svc." + dns.Fqdn(zone)
		h.await(t, q(name, dns.TypeA), answers(rrs(name, "A", "10.244.77.7")...))
	}
	self := "hdns." + deployNamespace + ".svc.cluster.local."
	h.await(t, q(self, dns.TypeA), answers(rrs(self, "A", svc.Spec.ClusterIP)...))
	if strings.Contains(strings.ToLower(h.output()), "forbidden") {
		t.Errorf("hdns as the ServiceAccount logged a Forbidden error:\n%s", h.output())
	}
}

// writeTokenKubeconfig writes a kubeconfig for server that authenticates
// with a bearer token.
func writeTokenKubeconfig(path, server string, ca []byte, token string) error {
	const name = "hdns"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
