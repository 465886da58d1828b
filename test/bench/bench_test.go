//go:build bench

// Package bench measures hdns against CoreDNS and Knot DNS:
// throughput and latency under dnsperf (TestThroughput), memory per
// endpoint (TestMemory), propagation of a pod status change to the
// answer (TestPropagation), of endpoint changes at a steady rate among
// up to 200k endpoints (TestChurn) and of a one-file edit of a manifests
// directory (TestManifestEdit). Every test but the last runs on a real control plane
// (test/e2e/harness) on loopback. Figures are printed as markdown tables
// and appended to the file named by HDNS_BENCH_REPORT; they are never
// pass or fail. test/bench/run.sh runs the suite; HDNS_BENCH_SMOKE=1
// makes it a few seconds long (what CI runs).
package bench

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hdns-dev/hdns/test/e2e/harness"
)

// Environment variables that tune the suite.
const (
	// SmokeEnv set to a non-empty value (or go test -short) selects the
	// CI smoke sizes: one run of one second per mix, 100 names, 100
	// endpoints, 5 changes.
	SmokeEnv = "HDNS_BENCH_SMOKE"
	// ReportEnv names a file the tests append their markdown tables to.
	ReportEnv = "HDNS_BENCH_REPORT"
	// RunsEnv overrides the number of runs per server and mix (default 3).
	RunsEnv = "HDNS_BENCH_RUNS"
	// DurationEnv overrides the length of one dnsperf run (default 10s).
	DurationEnv = "HDNS_BENCH_DURATION"
	// CoreDNSEnv names the CoreDNS binary (test/e2e/tools/build-coredns.sh).
	CoreDNSEnv = "HDNS_E2E_COREDNS"
	// ScalesEnv overrides the memory test's endpoint counts, comma-separated.
	ScalesEnv = "HDNS_BENCH_SCALES"
	// ChangesEnv overrides the number of propagation changes (default 50).
	ChangesEnv = "HDNS_BENCH_CHANGES"
	// ProfileEnv, when set to a directory, makes TestThroughput record a
	// CPU profile of hdns (perf record) during its first hot-3 run there,
	// and TestMemory save hdns's heap profile at each scale
	// (hdns-heap-<endpoints>.pb.gz, after a GC, for go tool pprof; and
	// .txt, the same as text ending with the runtime's MemStats).
	ProfileEnv = "HDNS_BENCH_PROFILE"
)

// config is the suite's sizing, from the environment.
type config struct {
	smoke    bool
	runs     int
	duration time.Duration
	names    int   // names of the uniform mix
	scales   []int // memory test endpoint counts
	changes  int   // propagation changes
}

func loadConfig(t testing.TB) config {
	t.Helper()
	c := config{runs: 3, duration: 10 * time.Second, names: 10000, scales: []int{1000, 10000, 50000}, changes: 50}
	if os.Getenv(SmokeEnv) != "" || testing.Short() {
		c = config{smoke: true, runs: 1, duration: time.Second, names: 100, scales: []int{100}, changes: 5}
	}
	if v := os.Getenv(RunsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", RunsEnv, v)
		}
		c.runs = n
	}
	if v := os.Getenv(DurationEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d%time.Second != 0 {
			t.Fatalf("%s=%q: want whole seconds, at least 1s", DurationEnv, v)
		}
		c.duration = d
	}
	if v := os.Getenv(ScalesEnv); v != "" {
		c.scales = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want positive integers", ScalesEnv, v)
			}
			c.scales = append(c.scales, n)
		}
	}
	if v := os.Getenv(ChangesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", ChangesEnv, v)
		}
		c.changes = n
	}
	return c
}

// hdnsBuild is the hdns binary, built from the work tree at most once per
// test binary.
var hdnsBuild = harness.Binary{Pkg: harness.HDNS}

func TestMain(m *testing.M) {
	code := m.Run()
	hdnsBuild.Remove()
	floorBuild.Remove()
	os.Exit(code)
}

// hdnsBinary returns the hdns binary built from this work tree.
func hdnsBinary(t testing.TB) string { return hdnsBuild.Path(t) }

// corednsBinary returns HDNS_E2E_COREDNS or fails t.
func corednsBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(CoreDNSEnv)
	if bin == "" {
		t.Fatalf("%s is not set (test/bench/run.sh sets it from test/e2e/tools/build-coredns.sh)", CoreDNSEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v", CoreDNSEnv, err)
	}
	return bin
}

// lookTool fails t unless the named program is installed.
func lookTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (Debian package %s; scripts/setup installs it): %v", name, pkg, err)
	}
	return p
}

// report appends a markdown section to HDNS_BENCH_REPORT (if set) and
// logs it.
func report(t testing.TB, md string) {
	t.Helper()
	t.Logf("\n%s", md)
	path := os.Getenv(ReportEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(md + "\n"); err != nil {
		t.Errorf("report: %v", err)
	}
}

// versions describes the programs measured, one per line.
func versions(t testing.TB, withKnot bool) string {
	t.Helper()
	line := func(want string, name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, want) {
				return strings.TrimSpace(l)
			}
		}
		return name + " (version unknown)"
	}
	rev := strings.TrimSpace(line("", "git", "describe", "--always", "--dirty"))
	lines := []string{
		"hdns " + rev + " (work tree, " + runtime.Version() + ")",
		line("CoreDNS", corednsBinary(t), "-version"),
	}
	if withKnot {
		lines = append(lines, line("Knot", "knotd", "--version"), "dnsperf "+strings.TrimPrefix(line("Version", "dnsperf", "-h"), "Version "))
	}
	return strings.Join(lines, "; ")
}

func numCPU() int { return runtime.NumCPU() }
