//go:build bench

package bench

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/internal/testproc"
	"github.com/hdns-dev/hdns/test/e2e/harness"
)

const (
	// startTimeout bounds a DNS server's start, up to answering: hdns
	// loading 200k endpoints of manifests on a busy machine takes a minute.
	startTimeout = 3 * time.Minute
	// serverCore is the CPU the DNS server under test is pinned to in the
	// throughput test; clientCore is dnsperf's.
	serverCore = "0"
	clientCore = "1"
	// zone is the zone every server serves.
	zone = "cluster.local."
)

// startProc starts name (argv) in dir, pinned to core (when core is not
// empty), and stops it at the end of t (testproc). taskset execs the
// program, so the pid is the program's.
func startProc(t testing.TB, name, dir, core string, argv ...string) *testproc.Proc {
	t.Helper()
	if core != "" {
		argv = append([]string{"taskset", "-c", core}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	return testproc.Start(t, name, cmd)
}

// server is a DNS server under test.
type server struct {
	name  string // "hdns", "CoreDNS", "Knot"
	addr  string // host:port, UDP and TCP
	p     *testproc.Proc
	http  string // hdns only: its HTTP address (--http-listen)
	admin string // hdns only: its debug address (--admin-listen)
}

// rss returns the resident set size and its peak (VmHWM) in bytes.
func (s *server) rss() (cur, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.p.Pid()))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	return cur, peak, nil
}

// cpu returns the CPU time (user + system) the server has used.
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.p.Pid()))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields count from after ")".
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat: %q", b)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on every Linux architecture Go supports
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// startHDNS runs the hdns binary built from the work tree against
// kubeconfig (none when empty: extra then names its source, e.g.
// --manifests), pinned to core unless empty, with its defaults plus extra
// args, and waits until /readyz answers 200.
func startHDNS(t testing.TB, kubeconfig, core string, extra ...string) *server {
	t.Helper()
	bin := hdnsBinary(t)
	port, httpPort, adminPort := testproc.FreePort(t), testproc.FreePort(t), testproc.FreePort(t)
	args := []string{bin}
	if kubeconfig != "" {
		args = append(args, "--kubeconfig", kubeconfig)
	}
	args = append(append(args, "--zone", zone,
		"--listen", "127.0.0.1:"+strconv.Itoa(port), "--http-listen", "127.0.0.1:"+strconv.Itoa(httpPort),
		"--admin-listen", "127.0.0.1:"+strconv.Itoa(adminPort),
		"--log-level", "warn"), extra...)
	p := startProc(t, "hdns", "", core, args...)
	s := &server{name: "hdns", addr: "127.0.0.1:" + strconv.Itoa(port), p: p, http: "127.0.0.1:" + strconv.Itoa(httpPort), admin: "127.0.0.1:" + strconv.Itoa(adminPort)}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			t.Fatalf("hdns exited: %v\n%s", p.Cmd.ProcessState, p.Tail(8000))
		}
		if httpOK("http://" + s.http + "/readyz") {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("hdns not ready within %v\n%s", startTimeout, p.Tail(8000))
	return nil
}

func httpOK(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// corefile is CoreDNS's configuration: the kubernetes plugin on the same
// control plane, no cache, UDP answers capped at 1232 bytes like hdns and
// Knot (bufsize), errors logged, plus the directives in plugins (whole
// lines, or empty).
func corefile(port int, kubeconfig, plugins string) string {
	return fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    errors
%s    bufsize 1232
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        ttl 5
    }
}
`, port, plugins, kubeconfig)
}

// startCoreDNS runs CoreDNS (pinned to core unless empty) with the
// kubernetes plugin watching kubeconfig's cluster and waits until ready
// says it answers as it should.
func startCoreDNS(t testing.TB, kubeconfig, core string, ready func(addr string) error) *server {
	t.Helper()
	return startCoreDNSWith(t, kubeconfig, core, "", ready)
}

// startCoreDNSWith is startCoreDNS with more directives (corefile's
// plugins).
func startCoreDNSWith(t testing.TB, kubeconfig, core, plugins string, ready func(addr string) error) *server {
	t.Helper()
	bin := corednsBinary(t)
	dir := t.TempDir()
	port := testproc.FreePort(t)
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(corefile(port, kubeconfig, plugins)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "CoreDNS", dir, core, bin, "-conf", filepath.Join(dir, "Corefile"))
	s := &server{name: "CoreDNS", addr: "127.0.0.1:" + strconv.Itoa(port), p: p}
	waitReady(t, s, ready)
	return s
}

// knotConf is knotd's configuration: one UDP and one TCP worker (the
// server gets one core), the zone from file, no journal or timers written.
func knotConf(dir string, port int) string {
	return fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "%[1]s"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "%[1]s"
    journal-content: none
    zonefile-sync: -1
    semantic-checks: off
zone:
  - domain: cluster.local
    file: "%[1]s/cluster.local.zone"
`, dir, port)
}

// startKnot runs knotd serving zoneText as cluster.local, pinned to core.
func startKnot(t testing.TB, zoneText, core string, ready func(addr string) error) *server {
	t.Helper()
	lookTool(t, "knotd", "knot")
	dir := t.TempDir()
	port := testproc.FreePort(t)
	if err := os.WriteFile(filepath.Join(dir, "cluster.local.zone"), []byte(zoneText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "knot.conf"), []byte(knotConf(dir, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "Knot", dir, core, "knotd", "-c", filepath.Join(dir, "knot.conf"))
	s := &server{name: "Knot", addr: "127.0.0.1:" + strconv.Itoa(port), p: p}
	waitReady(t, s, ready)
	return s
}

// floorBuild is test/bench/udpfloor, built at most once per test binary.
var floorBuild = harness.Binary{Pkg: "github.com/hdns-dev/hdns/test/bench/udpfloor", Tags: []string{"bench"}}

// startFloor runs udpfloor pinned to core, answering every query with
// reply, and waits until ready succeeds.
func startFloor(t testing.TB, reply []byte, core string, ready func(addr string) error) *server {
	t.Helper()
	port := testproc.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := startProc(t, "udpfloor", "", core, floorBuild.Path(t), "--listen", addr, "--reply", hex.EncodeToString(reply))
	s := &server{name: "udpfloor", addr: addr, p: p}
	waitReady(t, s, ready)
	return s
}

// waitReady polls ready until it succeeds, the server exits or
// startTimeout passes.
func waitReady(t testing.TB, s *server, ready func(addr string) error) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var err error
	for time.Now().Before(deadline) {
		if !s.p.Alive() {
			t.Fatalf("%s exited: %v\n%s", s.name, s.p.Cmd.ProcessState, s.p.Tail(8000))
		}
		if err = ready(s.addr); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %v: %v\n%s", s.name, startTimeout, err, s.p.Tail(8000))
}

// exchange asks addr one question (EDNS 1232, RD off, 2s timeout).
func exchange(addr, name string, qtype uint16, tcp bool) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	if tcp {
		c.Net = "tcp"
	}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// expect checks that addr answers name/qtype with rcode and n answer
// records of that type.
func expect(addr, name string, qtype uint16, tcp bool, rcode, n int) error {
	r, err := exchange(addr, name, qtype, tcp)
	if err != nil {
		return err
	}
	got := 0
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			got++
		}
	}
	if r.Rcode != rcode || got != n {
		return fmt.Errorf("%s %s: got %s with %d records, want %s with %d",
			name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], got, dns.RcodeToString[rcode], n)
	}
	return nil
}
