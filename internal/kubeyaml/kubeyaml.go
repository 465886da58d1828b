// Package kubeyaml reads Kubernetes objects from YAML as the tools that
// apply them do: multi-document files into unstructured objects, and a
// plain kustomization (apiVersion, kind and resources only) into its
// objects in kustomize's apply order. Tests use it to compare what
// deploy/ and charts/hdns install and to apply them to an API server.
//
// It owns no knowledge of hdns's objects and must not import hdns's own
// packages; it implements no kustomize transformer.
package kubeyaml

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// applyOrder is kustomize's legacy resource order: these kinds first, in
// this order, so that what others need (a namespace, a CRD, an account)
// exists before them; every other kind after them, in input order.
var applyOrder = []string{
	"Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
	"ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
	"ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
	"LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
	"Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
}

// SortForApply orders objs in place by kustomize's legacy order (see
// applyOrder); it is stable, so objects of one kind keep their order.
func SortForApply(objs []*unstructured.Unstructured) {
	rank := func(kind string) int {
		if i := slices.Index(applyOrder, kind); i >= 0 {
			return i
		}
		return len(applyOrder)
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return rank(a.GetKind()) - rank(b.GetKind()) })
}

// LoadKustomization reads dir/kustomization.yaml and returns the objects of
// the files under its resources:, in kustomize's apply order. It implements
// no transformer, so it rejects a kustomization with any field but
// apiVersion, kind and resources rather than return something kustomize
// would render differently.
func LoadKustomization(dir string) ([]*unstructured.Unstructured, error) {
	path := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kustomization: %w", err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w (only apiVersion, kind and resources are rendered here)", path, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion %q kind %q, want kustomize.config.k8s.io/v1beta1 Kustomization", path, k.APIVersion, k.Kind)
	}
	if len(k.Resources) == 0 {
		return nil, fmt.Errorf("%s: no resources", path)
	}
	var objs []*unstructured.Unstructured
	for _, r := range k.Resources {
		more, err := ReadFile(filepath.Join(dir, r))
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	SortForApply(objs)
	return objs, nil
}

// ReadFile decodes every non-empty YAML document of the file at path.
func ReadFile(path string) ([]*unstructured.Unstructured, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("manifest file: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("manifest file %s is a directory: only files are read", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Decode(f, path)
}

// Decode decodes every YAML document of r that holds an object; documents
// of comments only, or empty, are skipped. name labels errors.
func Decode(r io.Reader, name string) ([]*unstructured.Unstructured, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", name, i, err)
		}
		out = append(out, u)
	}
}
