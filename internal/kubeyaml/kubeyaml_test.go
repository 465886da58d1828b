package kubeyaml

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func kinds(t *testing.T, dir string) []string {
	t.Helper()
	objs, err := LoadKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	var k []string
	for _, o := range objs {
		k = append(k, o.GetKind())
	}
	return k
}

func write(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadKustomizationOrdersLikeKustomize(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml, b.yaml]\n")
	write(t, dir, "a.yaml", "# only a comment\n---\nkind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {name: n}\n---\n---\nkind: Deployment\napiVersion: apps/v1\nmetadata: {name: d}\n")
	write(t, dir, "b.yaml", "kind: ServiceMonitor\napiVersion: monitoring.coreos.com/v1\nmetadata: {name: m}\n---\nkind: Namespace\napiVersion: v1\nmetadata: {name: ns}\n")
	got := kinds(t, dir)
	if want := []string{"Namespace", "Deployment", "NetworkPolicy", "ServiceMonitor"}; !slices.Equal(got, want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
}

func TestLoadKustomizationRefusesTransformers(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: x\nresources: [a.yaml]\n")
	write(t, dir, "a.yaml", "kind: Namespace\napiVersion: v1\nmetadata: {name: ns}\n")
	if _, err := LoadKustomization(dir); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("LoadKustomization with a namespace: field: %v, want an error naming it", err)
	}
}

func TestLoadKustomizationReadsTheBase(t *testing.T) {
	got := kinds(t, "../../deploy")
	if len(got) == 0 || got[0] != "Namespace" {
		t.Errorf("deploy/ kinds %v: want the Namespace first", got)
	}
}
