//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/hdns-dev/hdns/internal/helmtest"
)

const (
	// chartDir is charts/hdns, relative to this package's directory.
	chartDir = "../../charts/hdns"
	// chartAllOn turns every toggle of the chart on.
	chartAllOn = chartDir + "/ci/all-on-values.yaml"
)

// chart applies the output of helm template to the real API server, with
// server-side apply and strict field validation as deploy does for the
// base: with default values (the base's objects, in the base's namespace),
// and with every toggle on in a namespace of its own, where the pod
// template must still pass "restricted" Pod Security. Then it installs the
// chart with helm itself, as the README says, into a third namespace.
func (e *env) chart(t *testing.T) {
	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(e.cp.Config)
	cfg.WarningHandler = warnings

	t.Run("Defaults", func(t *testing.T) {
		e.applyAll(t, cfg, warnings, helmtest.Template(t, chartDir, "hdns", deployNamespace), false)
	})
	t.Run("AllOn", func(t *testing.T) {
		e.installMonitoringCRDs(t, cfg, warnings)
		objs := helmtest.Template(t, chartDir, "hdns-full", "hdns-full", "--values", chartAllOn)
		// The PodMonitor is the ServiceMonitor's alternative: the chart
		// refuses both in one release, so it comes from a second rendering.
		objs = append(objs, helmtest.Template(t, chartDir, "hdns-full", "hdns-full",
			"--set", "podMonitor.enabled=true", "--show-only", "templates/monitoring.yaml")...)
		applied := e.applyAll(t, cfg, warnings, objs, false)
		dep := &appsv1.Deployment{}
		for _, o := range applied {
			if o.GetKind() == "Deployment" {
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, dep); err != nil {
					t.Fatal(err)
				}
			}
		}
		if dep.Name == "" {
			t.Fatal("no Deployment applied")
		}
		e.checkPodSecurity(t, cfg, warnings, dep)
	})
	t.Run("HelmInstall", func(t *testing.T) {
		out, err := helmtest.Run(t, "install", "hdns-install", chartDir, "--kubeconfig", e.cp.KubeconfigPath,
			"--namespace", "hdns-install", "--create-namespace", "--take-ownership")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", out)
		dep, err := e.cp.Client.AppsV1().Deployments("hdns-install").Get(e.ctx, "hdns-install", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("helm install: %v", err)
		}
		ns, err := e.cp.Client.CoreV1().Namespaces().Get(e.ctx, "hdns-install", metav1.GetOptions{})
		if err != nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("namespace hdns-install after helm install: %v, labels %v; want the chart's restricted enforcement", err, ns.GetLabels())
		}
		t.Logf("helm installed Deployment %s/%s", dep.Namespace, dep.Name)
	})
}

// monitoringGroup is the prometheus-operator's API group.
const monitoringGroup = "monitoring.coreos.com"

// installMonitoringCRDs installs stand-ins for the prometheus-operator's
// ServiceMonitor, PodMonitor and PrometheusRule CRDs and waits until they
// are served. Their schemas keep every field unchecked: the API server
// checks the objects' kinds, names and namespaces here, while
// charts/chart_test.go holds their content to deploy/monitoring's.
func (e *env) installMonitoringCRDs(t *testing.T, cfg *rest.Config, warnings *warningRecorder) {
	t.Helper()
	var crds []*unstructured.Unstructured
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "PrometheusRule"} {
		plural := map[string]string{"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors", "PrometheusRule": "prometheusrules"}[kind]
		crds = append(crds, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1",
			"kind":       "CustomResourceDefinition",
			"metadata":   map[string]any{"name": plural + "." + monitoringGroup},
			"spec": map[string]any{
				"group": monitoringGroup,
				"scope": "Namespaced",
				"names": map[string]any{"kind": kind, "listKind": kind + "List", "plural": plural, "singular": plural[:len(plural)-1]},
				"versions": []any{map[string]any{
					"name": "v1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{
						"type": "object",
						"properties": map[string]any{
							"spec": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
						},
					}},
				}},
			},
		}})
	}
	e.applyAll(t, cfg, warnings, crds, false)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	crdResource := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range crds {
		for !established(e, dyn, crdResource, c.GetName()) {
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established within 30 s", c.GetName())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// established reports whether the CRD name has condition Established=True.
func established(e *env, dyn dynamic.Interface, crds schema.GroupVersionResource, name string) bool {
	got, err := dyn.Resource(crds).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if fmt.Sprint(m["type"]) == "Established" && fmt.Sprint(m["status"]) == "True" {
			return true
		}
	}
	return false
}
