package charts

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/hdns-dev/hdns/internal/helmtest"
	"github.com/hdns-dev/hdns/internal/kubeyaml"
)

var update = flag.Bool("update", false, "rewrite hdns/files/ from deploy/monitoring")

const (
	chart      = "hdns"
	allOn      = "hdns/ci/all-on-values.yaml"
	deployDir  = "../deploy"
	monitoring = "../deploy/monitoring"
)

// key names an object as an API server does.
func key(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GroupVersionKind(), o.GetNamespace(), o.GetName())
}

// byKey indexes objs by key, failing t on a duplicate.
func byKey(t *testing.T, what string, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if _, dup := m[key(o)]; dup {
			t.Errorf("%s renders %s twice", what, key(o))
		}
		m[key(o)] = o
	}
	return m
}

func pretty(o *unstructured.Unstructured) string {
	js, err := json.MarshalIndent(o.Object, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(js)
}

// sameObjects fails t unless got and want hold the same objects, compared
// field by field as parsed YAML (order of objects, order of keys and
// comments do not count; order within lists does).
func sameObjects(t *testing.T, gotWhat string, got []*unstructured.Unstructured, wantWhat string, want []*unstructured.Unstructured) {
	t.Helper()
	g, w := byKey(t, gotWhat, got), byKey(t, wantWhat, want)
	for k, wo := range w {
		gobj, ok := g[k]
		switch {
		case !ok:
			t.Errorf("%s lacks %s, which %s has", gotWhat, k, wantWhat)
		case pretty(gobj) != pretty(wo):
			t.Errorf("%s differs from %s's:\n--- %s\n%s\n--- %s\n%s", k, wantWhat, gotWhat, pretty(gobj), wantWhat, pretty(wo))
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			t.Errorf("%s renders %s, which %s lacks", gotWhat, k, wantWhat)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readObjects(t *testing.T, paths ...string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, p := range paths {
		more, err := kubeyaml.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, more...)
	}
	return objs
}

func TestLint(t *testing.T) {
	for _, args := range [][]string{nil, {"--values", allOn}} {
		if _, err := helmtest.Run(t, append([]string{"lint", "--strict", chart}, args...)...); err != nil {
			t.Error(err)
		}
	}
}

// TestDefaultsRenderTheBase holds the chart's default values to the
// kustomize base: installed as release hdns in namespace hdns, it renders
// the base's objects and nothing else.
func TestDefaultsRenderTheBase(t *testing.T) {
	base, err := kubeyaml.LoadKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	sameObjects(t, "the chart", helmtest.Template(t, chart, "hdns", "hdns"), "deploy/", base)
}

// TestTogglesRenderTheBundles holds the chart's optional objects to
// deploy/egress's and deploy/monitoring's: with their toggles on (and
// release hdns in namespace hdns, no extra labels) they are the same
// objects, so the chart adds no second opinion on them.
func TestTogglesRenderTheBundles(t *testing.T) {
	set := []string{
		"--set", "forward.upstreams={resolv.conf}",
		"--set", "prometheus.url=http://prometheus.monitoring:9090",
		"--set", "serviceMonitor.enabled=true",
		"--set", "prometheusRule.enabled=true",
	}
	base, err := kubeyaml.LoadKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	want := append(base, readObjects(t,
		filepath.Join(deployDir, "egress", "forward.yaml"),
		filepath.Join(deployDir, "egress", "prometheus.yaml"),
		filepath.Join(monitoring, "servicemonitor.yaml"),
		filepath.Join(monitoring, "prometheusrule.yaml"),
	)...)
	got := helmtest.Template(t, chart, "hdns", "hdns", set...)
	// The Deployment takes the flags; the other objects must be the bundles'.
	got = slices.DeleteFunc(got, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Deployment" })
	want = slices.DeleteFunc(want, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Deployment" })
	sameObjects(t, "the chart with toggles", got, "deploy/ with egress/ and monitoring/", want)

	pods := helmtest.Template(t, chart, "hdns", "hdns", "--set", "podMonitor.enabled=true", "--show-only", "templates/monitoring.yaml")
	sameObjects(t, "the chart's PodMonitor", pods, "deploy/monitoring", readObjects(t, filepath.Join(monitoring, "podmonitor.yaml")))
}

// TestCoreDNSAdoptionRendersTheComponent holds corednsAdoption to the
// kustomize component deploy/coredns: with it on (release hdns in
// namespace hdns), the chart renders the base with the component's
// resources added and its patches' arguments appended to hdns's.
func TestCoreDNSAdoptionRendersTheComponent(t *testing.T) {
	base, err := kubeyaml.LoadKustomization(deployDir)
	if err != nil {
		t.Fatal(err)
	}
	resources, args := readArgsComponent(t, filepath.Join(deployDir, "coredns"))
	for _, o := range base {
		if o.GetKind() == "Deployment" {
			appendArgs(t, o, args)
		}
	}
	got := helmtest.Template(t, chart, "hdns", "hdns", "--set", "corednsAdoption.enabled=true")
	sameObjects(t, "the chart with corednsAdoption", got, "deploy/ with the coredns component", append(base, resources...))
}

// readArgsComponent reads the kustomize component in dir: the objects of
// its resources, and the arguments its patches add to the Deployment's
// first container. It fails t on any other field or patch, which the
// comparison would not reproduce.
func readArgsComponent(t *testing.T, dir string) (objs []*unstructured.Unstructured, args []any) {
	t.Helper()
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Patches    []struct {
			Target struct {
				Group   string `json:"group"`
				Version string `json:"version"`
				Kind    string `json:"kind"`
				Name    string `json:"name"`
			} `json:"target"`
			Patch string `json:"patch"`
		} `json:"patches"`
	}
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(dir, "kustomization.yaml")), &k); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	if k.Kind != "Component" {
		t.Fatalf("%s: kind %q, want Component", dir, k.Kind)
	}
	for _, r := range k.Resources {
		objs = append(objs, readObjects(t, filepath.Join(dir, r))...)
	}
	const argsPath = "/spec/template/spec/containers/0/args/-"
	for _, p := range k.Patches {
		if p.Target.Kind != "Deployment" || p.Target.Name != "hdns" {
			t.Fatalf("%s: a patch of %+v; the test knows only the Deployment hdns's", dir, p.Target)
		}
		var ops []struct {
			Op    string `json:"op"`
			Path  string `json:"path"`
			Value string `json:"value"`
		}
		if err := yaml.UnmarshalStrict([]byte(p.Patch), &ops); err != nil {
			t.Fatalf("%s: patch: %v", dir, err)
		}
		for _, op := range ops {
			if op.Op != "add" || op.Path != argsPath {
				t.Fatalf("%s: patch op %s %s; the test knows only add %s", dir, op.Op, op.Path, argsPath)
			}
			args = append(args, op.Value)
		}
	}
	if len(objs) == 0 || len(args) == 0 {
		t.Fatalf("%s: %d objects, arguments %q; want both", dir, len(objs), args)
	}
	return objs, args
}

// appendArgs appends args to the arguments of dep's first container.
func appendArgs(t *testing.T, dep *unstructured.Unstructured, args []any) {
	t.Helper()
	path := []string{"spec", "template", "spec", "containers"}
	containers, _, err := unstructured.NestedSlice(dep.Object, path...)
	if err != nil || len(containers) == 0 {
		t.Fatalf("%s: containers %v: %v", key(dep), containers, err)
	}
	c := containers[0].(map[string]any)
	c["args"] = append(c["args"].([]any), args...)
	if err := unstructured.SetNestedSlice(dep.Object, containers, path...); err != nil {
		t.Fatal(err)
	}
}

// TestAllOnRendersEveryFlag checks what ci/all-on-values.yaml turns on
// beyond the bundles: each flag once, and a mounted file behind every
// file flag.
func TestAllOnRendersEveryFlag(t *testing.T) {
	// A query with what YAML would otherwise read as a mapping and a comment.
	query := `sum by (namespace, pod) (x{path="a: b #c"})`
	objs := helmtest.Template(t, chart, "hdns-full", "dns-system", "--values", allOn, "--set-literal", "prometheus.loadQuery="+query)
	var dep *unstructured.Unstructured
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		if o.GetKind() == "Deployment" {
			dep = o
		}
	}
	for kind, n := range map[string]int{"NetworkPolicy": 3, "ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 2, "Role": 1, "RoleBinding": 1, "Deployment": 1} {
		if kinds[kind] != n {
			t.Errorf("%d objects of kind %s, want %d (kinds %v)", kinds[kind], kind, n, kinds)
		}
	}
	if dep == nil {
		t.FailNow()
	}
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args         []string `json:"args"`
						VolumeMounts []struct {
							MountPath string `json:"mountPath"`
						} `json:"volumeMounts"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	js, _ := dep.MarshalJSON()
	if err := json.Unmarshal(js, &d); err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	for _, want := range []string{
		"--admin-listen=", "--zone=example.internal", "--log-format=json", "--default-policy=round-robin",
		"--lameduck=10s", "--forward=resolv.conf", "--forward=192.0.2.53:53", "--forward-allow=10.244.0.0/16",
		"--prometheus-url=https://prometheus.monitoring:9090", "--load-query=" + query, "--endpoint-metrics",
		"--coredns-configmap=kube-system/coredns-hdns-full", "--coredns-forward=dns-system/hdns-full", "--coredns-port=8053",
		"--rrl-responses-per-second=200", "--rrl-errors-per-second=20", "--rrl-window=30s", "--rrl-slip=0",
		"--rrl-ipv4-prefix-length=32", "--rrl-ipv6-prefix-length=64",
	} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
	files := 0
	for _, a := range c.Args {
		name, file, ok := strings.Cut(a, "-file=")
		if !ok {
			continue
		}
		files++
		mounted := slices.ContainsFunc(c.VolumeMounts, func(m struct {
			MountPath string `json:"mountPath"`
		}) bool {
			return strings.HasPrefix(file, m.MountPath+"/")
		})
		if !mounted {
			t.Errorf("%s names %s, under no volume mount", name, file)
		}
	}
	if files != 4 {
		t.Errorf("args %q: %d file flags, want 4 (bearer token, CA, certificate, key)", c.Args, files)
	}
}

// TestGracePeriodCoversLameduck: rendering refuses a grace period the
// kubelet would end while hdns still answers.
func TestGracePeriodCoversLameduck(t *testing.T) {
	_, err := helmtest.Run(t, "template", "hdns", chart, "--set", "lameduckSeconds=30", "--set", "terminationGracePeriodSeconds=30")
	if err == nil || !strings.Contains(err.Error(), "shorter than lameduckSeconds") {
		t.Errorf("a 30 s grace period for a 30 s lameduck: %v, want a refusal", err)
	}
	if _, err := helmtest.Run(t, "template", "hdns", chart, "--set", "lameduckSeconds=25", "--set", "terminationGracePeriodSeconds=30"); err != nil {
		t.Error(err)
	}
}

// TestRRLNeedsResponsesPerSecond: rendering refuses rrl values that
// would do nothing (or stop hdns) while rate limiting is off.
func TestRRLNeedsResponsesPerSecond(t *testing.T) {
	_, err := helmtest.Run(t, "template", "hdns", chart, "--set", "rrl.slip=0")
	if err == nil || !strings.Contains(err.Error(), "rrl.responsesPerSecond 0") {
		t.Errorf("rrl.slip without rrl.responsesPerSecond: %v, want a refusal", err)
	}
}

// TestSchemaRefusesMistakes: values.schema.json refuses a misspelt value
// and a value outside its set, rather than render the defaults silently.
func TestSchemaRefusesMistakes(t *testing.T) {
	for _, set := range []string{
		"replica=3", "logFormat=yaml", "networkPolicy.egress.forwad.enabled=false",
		"corednsAdoption.configMap=coredns-hdns", "rrl.ipv4PrefixLength=33", "rrl.window=15",
	} {
		if _, err := helmtest.Run(t, "template", "hdns", chart, "--set", set); err == nil {
			t.Errorf("--set %s: rendered, want a refusal", set)
		}
	}
}

// TestVersionIsTheRepositorys: the chart's version, its appVersion and
// so its image tag are VERSION's; its image repository is IMAGE's.
func TestVersionIsTheRepositorys(t *testing.T) {
	version := strings.TrimSpace(string(readFile(t, "../VERSION")))
	image := strings.TrimSpace(string(readFile(t, "../IMAGE")))
	var meta struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(readFile(t, "hdns/Chart.yaml"), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Version != version || meta.AppVersion != version {
		t.Errorf("Chart.yaml version %q appVersion %q; VERSION is %q", meta.Version, meta.AppVersion, version)
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
	}
	if err := yaml.Unmarshal(readFile(t, "hdns/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if values.Image.Repository != image || values.Image.Tag != "" {
		t.Errorf("values image %+v; want repository %q and no tag (v<appVersion>)", values.Image, image)
	}
}

// TestFilesAreDeployMonitorings keeps one source of truth for the alerts
// and the dashboard: hdns/files/ holds deploy/monitoring's files byte for
// byte (helm reads only files inside the chart). Edit deploy/monitoring's,
// then run go test ./charts -run TestFilesAreDeployMonitorings -update.
func TestFilesAreDeployMonitorings(t *testing.T) {
	for _, name := range []string{"hdns.rules.yaml", "dashboard.json"} {
		src, dst := filepath.Join(monitoring, name), filepath.Join("hdns", "files", name)
		want := readFile(t, src)
		got, err := os.ReadFile(dst)
		if err == nil && bytes.Equal(got, want) {
			continue
		}
		if *update {
			if err := os.WriteFile(dst, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s differs from %s (%v); run go test ./charts -run %s -update", dst, src, err, t.Name())
	}
}
