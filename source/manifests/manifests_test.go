package manifests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hdns-dev/hdns/internal/sourcetest"
	"github.com/hdns-dev/hdns/zone"
)

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const oneService = `apiVersion: v1
kind: Service
metadata: {name: a, namespace: x}
spec: {clusterIP: 10.0.0.1}
`

func TestSourceDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), oneService)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub", "b.yml"), strings.ReplaceAll(oneService, "name: a", "name: b"))
	writeFile(t, filepath.Join(dir, "notes.txt"), "not a manifest")
	src := &Source{Path: dir}
	var sink sourcetest.Sink
	if err := src.Load(&sink); err != nil {
		t.Fatal(err)
	}
	svcs, _, ok := sink.List()
	if !ok || len(svcs) != 2 {
		t.Fatalf("List: %d Services, complete=%v; want 2, true", len(svcs), ok)
	}
}

// TestSourceReload edits a watched file: a good edit shows up, a
// broken one is reported and the last good objects stay.
func TestSourceReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.yaml")
	writeFile(t, path, oneService)
	reg := prometheus.NewRegistry()
	metrics := zone.NewMetrics(reg)
	src := &Source{Path: path, Interval: 20 * time.Millisecond, Metrics: metrics}
	var sink sourcetest.Sink
	if err := src.Load(&sink); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx, &sink)

	waitChanged := func(before int) bool {
		deadline := time.Now().Add(time.Second)
		for sink.Calls() == before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		return sink.Calls() > before
	}
	calls := sink.Calls()
	writeFile(t, path, oneService+"---\n"+strings.ReplaceAll(oneService, "name: a", "name: b"))
	if !waitChanged(calls) {
		t.Fatal("an edit did not show within 1s")
	}
	if svcs, _, _ := sink.List(); len(svcs) != 2 {
		t.Fatalf("after the edit: %d Services, want 2", len(svcs))
	}

	writeFile(t, path, oneService+"---\nkind: [broken\n")
	deadline := time.Now().Add(2 * time.Second)
	for testutil.ToFloat64(metrics.SourceErrors.WithLabelValues("manifests")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a broken edit was not counted within 2s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if svcs, _, ok := sink.List(); !ok || len(svcs) != 2 {
		t.Fatalf("after a broken edit: %d Services, complete=%v; want the last good 2", len(svcs), ok)
	}

	// Touching the file without changing it reloads but does not signal.
	calls = sink.Calls()
	writeFile(t, path, oneService)
	if !waitChanged(calls) {
		t.Fatal("the fix did not show within 1s")
	}
	now := time.Now().Add(time.Second)
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	before := sink.Calls()
	time.Sleep(200 * time.Millisecond)
	if sink.Calls() != before {
		t.Error("an unchanged file signalled a change")
	}
}

func TestSourceMissingPath(t *testing.T) {
	src := &Source{Path: filepath.Join(t.TempDir(), "nope.yaml")}
	var sink sourcetest.Sink
	if err := src.Load(&sink); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load of a missing file: %v, want an error naming it", err)
	}
	if _, _, ok := sink.List(); ok {
		t.Error("List complete without a successful load")
	}
}

// TestSourceConfigMapVolume lays a directory out as the kubelet
// mounts a ConfigMap: files in a hidden timestamped directory, reached
// through links. Each object must load once.
func TestSourceConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_11_27_05_00_00.123")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(data, "awx.yaml"), oneService)
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "awx.yaml"), filepath.Join(dir, "awx.yaml")); err != nil {
		t.Fatal(err)
	}
	src := &Source{Path: dir}
	var sink sourcetest.Sink
	if err := src.Load(&sink); err != nil {
		t.Fatal(err)
	}
	if svcs, _, _ := sink.List(); len(svcs) != 1 {
		t.Errorf("%d Services from a ConfigMap volume holding one", len(svcs))
	}
}
