// Package helmtest gives tests the helm command pinned in tools/helm (a
// nested module, so that hdns's own module never depends on helm) and
// renders charts with it into objects read as internal/kubeyaml reads
// deploy/, so that the two compare.
//
// It owns finding and building that binary and running it. No production
// package may import it; it imports only the standard library and
// internal/kubeyaml (and apimachinery's unstructured objects).
package helmtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/hdns-dev/hdns/internal/kubeyaml"
)

// BinaryEnv names a helm binary to use instead of the pinned build.
const BinaryEnv = "HDNS_HELM"

var binary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	// build.sh prints the cached binary's path at once, or builds it
	// first (once per pinned version).
	cmd := exec.Command(filepath.Join(root, "tools", "helm", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tools/helm/build.sh: %w\n%s", err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
})

// moduleRoot is the nearest directory above the working directory that
// holds tools/helm/build.sh.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "helm", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no tools/helm/build.sh above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of the pinned helm, building it on first use;
// it fails t when it cannot.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Run runs helm with args and returns its standard output and error.
// helm runs with its configuration, cache and data directories in a
// temporary directory, so that no user setting or repository changes it.
func Run(t testing.TB, args ...string) (stdout []byte, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out, nil
}

// Template renders chart as release in namespace (helm template; more
// flags, such as --values, in args) and returns its objects in kustomize's
// apply order. It fails t when helm or the decoding fails.
func Template(t testing.TB, chart, release, namespace string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := Run(t, append([]string{"template", release, chart, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kubeyaml.Decode(bytes.NewReader(out), "helm template "+chart)
	if err != nil {
		t.Fatal(err)
	}
	kubeyaml.SortForApply(objs)
	return objs
}
