package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/hdns-dev/hdns/internal/testproc"
)

var versionLine = regexp.MustCompile(`^hdns (\S+) \(commit ([0-9a-f]{40}(?:-dirty)?|unknown), (go\S+)\)\n$`)

// TestBinaryPrintsVersion: --version prints what the build recorded and
// exits 0; a release build's linker flags name the version and commit.
func TestBinaryPrintsVersion(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("hdns --version: %v", err)
	}
	m := versionLine.FindStringSubmatch(string(out))
	if m == nil || m[3] != runtime.Version() {
		t.Fatalf("hdns --version printed %q, want %s and the Go version %s", out, versionLine, runtime.Version())
	}

	release := filepath.Join(t.TempDir(), "hdns")
	const pkg = "github.com/hdns-dev/hdns/internal/buildinfo"
	build := exec.Command("go", "build", "-o", release, "-ldflags", "-X "+pkg+".version=v9.8.7 -X "+pkg+".commit=0123456789abcdef0123456789abcdef01234567", ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	out, err = exec.Command(release, "--version").Output()
	if err != nil {
		t.Fatalf("release hdns --version: %v", err)
	}
	if want := "hdns v9.8.7 (commit 0123456789abcdef0123456789abcdef01234567, " + runtime.Version() + ")\n"; string(out) != want {
		t.Errorf("release build printed %q, want %q", out, want)
	}
}

// TestBinaryLogsJSONAndExportsBuildInfo: with --log-format json every line
// is a JSON object, the first names the build, and hdns_build_info carries
// the same labels as --version.
func TestBinaryLogsJSONAndExportsBuildInfo(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := versionLine.FindStringSubmatch(string(out))
	if v == nil {
		t.Fatalf("hdns --version printed %q", out)
	}
	p := testproc.Start(t, "hdns", exec.Command(bin, "--manifests", "../../examples/awx.yaml",
		"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"))
	m, err := p.WaitLine(regexp.MustCompile(`"msg":"hdns serving","dns":"([^"]+)","http":"([^"]+)"`), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(p.Output()), "\n")
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log line: %q", line)
		}
	}
	var first struct{ Msg, Version, Commit, Go string }
	json.Unmarshal([]byte(lines[0]), &first)
	if first.Msg != "hdns starting" || first.Version != v[1] || first.Commit != v[2] || first.Go != v[3] {
		t.Errorf("first log line %q, want hdns starting with version %s commit %s go %s", lines[0], v[1], v[2], v[3])
	}

	resp, err := http.Get("http://" + m[2] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `hdns_build_info{commit="` + v[2] + `",goversion="` + v[3] + `",version="` + v[1] + `"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// TestClientGoLogsInTheChosenFormat: klog, which client-go logs through,
// writes with hdns's handler, so a JSON process writes JSON only.
func TestClientGoLogsInTheChosenFormat(t *testing.T) {
	var buf bytes.Buffer
	if _, err := newLogger("info", "json", &buf); err != nil {
		t.Fatal(err)
	}
	defer klog.ClearLogger()
	klog.InfoS("watch restarted", "resource", "endpointslices")
	klog.Flush()
	var rec struct{ Msg, Resource string }
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec.Msg != "watch restarted" || rec.Resource != "endpointslices" {
		t.Errorf("klog wrote %q (%v), want one JSON record from hdns's handler", buf.String(), err)
	}
	if _, err := newLogger("info", "xml", io.Discard); err == nil {
		t.Error("--log-format xml accepted")
	}
}
