package manifests

import (
	"context"
	"fmt"
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

// writeFile replaces path's contents at once, as editors save, so that no
// poll reads a file half written.
func writeFile(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
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

// TestSourceReadsOnlyWhatChanged: of a directory of many files, an edit
// parses the edited file alone and hands the zone its difference; a file
// removed takes its objects.
func TestSourceReadsOnlyWhatChanged(t *testing.T) {
	dir := t.TempDir()
	const files = 200
	for i := range files {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%03d.yaml", i)), serviceAt(fmt.Sprint("s", i), "10.0.0.1"))
	}
	src := &Source{Path: dir, Interval: 10 * time.Millisecond}
	var sink sourcetest.Sink
	if err := src.Load(&sink); err != nil {
		t.Fatal(err)
	}
	if n := src.parses.Load(); n != files {
		t.Fatalf("the first load parsed %d files, want %d", n, files)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx, &sink)

	// An editor's save: a new file renamed over the old one.
	tmp := filepath.Join(dir, ".f007.yaml.swp")
	writeFile(t, tmp, serviceAt("s7", "10.0.0.2")+"---\n"+serviceAt("extra", "10.0.0.3"))
	if err := os.Rename(tmp, filepath.Join(dir, "f007.yaml")); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, func() bool { return len(sink.Changes()) == 2 })
	if n := src.parses.Load(); n != files+1 {
		t.Errorf("an edit of one file parsed %d files, want 1", n-files)
	}
	svcs, _, _ := sink.List()
	if got := clusterIP(svcs, "s7"); got != "10.0.0.2" || clusterIP(svcs, "extra") != "10.0.0.3" || len(svcs) != files+1 {
		t.Errorf("after the edit: s7 at %s, %d Services; want 10.0.0.2 and %d", got, len(svcs), files+1)
	}

	if err := os.Remove(filepath.Join(dir, "f007.yaml")); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, func() bool { return len(sink.Changes()) == 4 })
	for _, c := range sink.Changes()[2:] {
		if c.Op != zone.OpDelete {
			t.Errorf("removing a file gave %v of %v", c.Op, c.Key())
		}
	}
	if svcs, _, _ := sink.List(); len(svcs) != files-1 || clusterIP(svcs, "s7") != "" {
		t.Errorf("after the removal: %d Services, want %d without s7", len(svcs), files-1)
	}
	if n := src.parses.Load(); n != files+1 {
		t.Errorf("a removal parsed %d files, want none", n-files-1)
	}
}

// TestSourceRejectsObjectsOfAnotherFile: a file defining what another
// holds keeps its last good objects until the other lets go; an object
// moved from one file to another in one edit is not a duplicate.
func TestSourceRejectsObjectsOfAnotherFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, a, serviceAt("one", "10.0.0.1"))
	writeFile(t, b, serviceAt("two", "10.0.0.2"))
	src := &Source{Path: dir}
	var sink sourcetest.Sink
	if err := src.Load(&sink); err != nil {
		t.Fatal(err)
	}
	writeFile(t, b, serviceAt("two", "10.0.0.2")+"---\n"+serviceAt("one", "10.0.0.9"))
	errs, err := src.poll(&sink)
	if err != nil || len(errs) != 1 || !strings.Contains(errs[0].Error(), "Service x/one is defined twice: in "+a+" and "+b) {
		t.Fatalf("a duplicate across files: %v, %v", errs, err)
	}
	if svcs, _, _ := sink.List(); clusterIP(svcs, "one") != "10.0.0.1" || len(svcs) != 2 {
		t.Fatalf("after the duplicate: %d Services, one at %s; want the last good objects", len(svcs), clusterIP(svcs, "one"))
	}
	writeFile(t, a, serviceAt("three", "10.0.0.3"))
	if errs, err := src.poll(&sink); err != nil || len(errs) != 0 {
		t.Fatalf("once a let go: %v, %v", errs, err)
	}
	if svcs, _, _ := sink.List(); clusterIP(svcs, "one") != "10.0.0.9" || len(svcs) != 3 {
		t.Errorf("once a let go: %d Services, one at %s; want b's", len(svcs), clusterIP(svcs, "one"))
	}

	// Moved in one edit of both files.
	writeFile(t, a, serviceAt("three", "10.0.0.3")+"---\n"+serviceAt("two", "10.0.0.2"))
	writeFile(t, b, serviceAt("one", "10.0.0.9"))
	before := len(sink.Changes())
	if errs, err := src.poll(&sink); err != nil || len(errs) != 0 {
		t.Fatalf("a move: %v, %v", errs, err)
	}
	if c := sink.Changes()[before:]; len(c) != 0 {
		t.Errorf("a move of an unchanged object gave changes %+v", c)
	}
}

func serviceAt(name, ip string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: x}\nspec: {clusterIP: %s}\n", name, ip)
}

func clusterIP(svcs []*zone.Service, name string) string {
	for _, s := range svcs {
		if s.Name == name && len(s.ClusterIPs) > 0 {
			return s.ClusterIPs[0].String()
		}
	}
	return ""
}
