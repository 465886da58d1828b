package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hdns-dev/hdns/internal/promtest"
	"github.com/hdns-dev/hdns/internal/testproc"
)

// buildBinary builds hdns once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hdns")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type process struct {
	*testproc.Proc
	dns, http, admin string
}

// startHDNS runs the binary with args on free loopback ports and waits for
// it to say where it serves.
func startHDNS(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	args = append(slices.Clone(freeListens), args...)
	p := &process{Proc: testproc.Start(t, "hdns", exec.Command(bin, args...))}
	m, err := p.WaitLine(testproc.HDNSServing, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p.dns, p.http = m[1], m[2]
	if m, err := p.WaitLine(testproc.HDNSAdmin, time.Second); err == nil {
		p.admin = m[1]
	}
	return p
}

// freeListens puts every listener of hdns on a free loopback port, so that
// tests running side by side do not collide on the default ports.
var freeListens = []string{"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}

// httpGet GETs url and returns the status code and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestBinaryServesExplainOnlyOnAdmin: /debug/explain, which lists every
// Service's Pods, nodes and zones, answers on --admin-listen and not on
// --http-listen, which monitoring reaches; --admin-listen "" turns it off.
func TestBinaryServesExplainOnlyOnAdmin(t *testing.T) {
	bin := buildBinary(t)
	explain := "/debug/explain?name=web-headless.awx.svc.cluster.local&type=A"
	p := startHDNS(t, bin, "--manifests", "../../examples/awx.yaml", "--pprof")
	if p.admin == "" {
		t.Fatalf("the serving line names no admin address:\n%s", p.Output())
	}
	if code, body := httpGet(t, "http://"+p.admin+explain); code != http.StatusOK || !strings.Contains(body, `"candidates"`) {
		t.Errorf("GET %s on --admin-listen: %d\n%s", explain, code, body)
	}
	if code, _ := httpGet(t, "http://"+p.admin+"/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("GET /debug/pprof/cmdline on --admin-listen: %d, want 200", code)
	}
	for _, path := range []string{explain, "/debug/pprof/cmdline"} {
		if code, _ := httpGet(t, "http://"+p.http+path); code != http.StatusNotFound {
			t.Errorf("GET %s on --http-listen: %d, want 404", path, code)
		}
	}

	off := startHDNS(t, bin, "--manifests", "../../examples/awx.yaml", "--admin-listen", "")
	if off.admin != "" {
		t.Errorf("--admin-listen \"\": still serves on %s", off.admin)
	}
	if code, _ := httpGet(t, "http://"+off.http+"/readyz"); code != http.StatusOK && code != http.StatusServiceUnavailable {
		t.Errorf("--admin-listen \"\": GET /readyz: %d", code)
	}
}

// dig runs the real dig against the process and returns its short answer
// lines and the status.
func (p *process) dig(t *testing.T, args ...string) (status string, answer []string) {
	t.Helper()
	host, port, _ := strings.Cut(p.dns, ":")
	full := append([]string{"@" + host, "-p", port, "+norec", "+time=2", "+tries=1", "+noall", "+answer", "+authority", "+comments"}, args...)
	out, err := exec.Command("dig", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if m := regexp.MustCompile(`status: (\w+)`).FindStringSubmatch(line); m != nil {
			status = m[1]
		}
		if line != "" && !strings.HasPrefix(line, ";") {
			answer = append(answer, strings.Join(strings.Fields(line), " "))
		}
	}
	return status, answer
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBinaryServesREADMEManifest runs the README's first command on a copy
// of its manifest and checks the answers with dig.
func TestBinaryServesREADMEManifest(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is not installed (apt-get install bind9-dnsutils; scripts/test does it)")
	}
	bin := buildBinary(t)
	manifest := filepath.Join(t.TempDir(), "awx.yaml")
	copyFile(t, "../../examples/awx.yaml", manifest)
	p := startHDNS(t, bin, "--manifests", manifest)

	const svc = "web-headless.awx.svc.cluster.local."
	tests := []struct {
		args   []string
		status string
		want   []string
	}{
		{args: []string{svc, "A"}, status: "NOERROR", want: []string{
			svc + " 5 IN A 10.244.217.10", svc + " 5 IN A 10.244.194.67", svc + " 5 IN A 10.244.217.11",
			svc + " 5 IN A 10.244.194.70", svc + " 5 IN A 10.244.217.14", svc + " 5 IN A 10.244.194.71",
		}},
		{args: []string{"_nginx-web-headless._tcp." + svc, "SRV"}, status: "NOERROR", want: []string{
			"_nginx-web-headless._tcp." + svc + " 5 IN SRV 0 16 80 web-0." + svc,
			"_nginx-web-headless._tcp." + svc + " 5 IN SRV 0 16 80 web-1." + svc,
			"_nginx-web-headless._tcp." + svc + " 5 IN SRV 0 16 80 web-2." + svc,
			"_nginx-web-headless._tcp." + svc + " 5 IN SRV 0 16 80 10-244-194-70." + svc,
			"_nginx-web-headless._tcp." + svc + " 5 IN SRV 0 16 80 10-244-217-14." + svc,
			"_nginx-web-headless._tcp." + svc + " 5 IN SRV 0 16 80 10-244-194-71." + svc,
		}},
		{args: []string{"web-2." + svc, "A"}, status: "NOERROR", want: []string{"web-2." + svc + " 5 IN A 10.244.217.11"}},
		{args: []string{"-x", "10.244.194.67"}, status: "NOERROR", want: []string{"67.194.244.10.in-addr.arpa. 5 IN PTR web-1." + svc}},
		{args: []string{"nope.awx.svc.cluster.local.", "A"}, status: "NXDOMAIN", want: []string{"cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5"}},
		{args: []string{"awx.svc.cluster.local.", "A"}, status: "NOERROR", want: []string{"cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5"}},
		{args: []string{"example.com.", "A"}, status: "REFUSED"},
	}
	serial := regexp.MustCompile(`hostmaster\.cluster\.local\. \d+ `)
	for _, tt := range tests {
		status, answer := p.dig(t, tt.args...)
		for i := range answer {
			answer[i] = serial.ReplaceAllString(answer[i], "hostmaster.cluster.local. SERIAL ")
		}
		if status != tt.status || strings.Join(answer, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("dig %v: %s\n%s\nwant %s\n%s", tt.args, status, strings.Join(answer, "\n"), tt.status, strings.Join(tt.want, "\n"))
		}
	}

	// An edit of the file shows in answers within a second.
	data, _ := os.ReadFile(manifest)
	edited := strings.Replace(string(data), `["10.244.217.10"]`, `["10.244.217.99"]`, 1)
	if err := os.WriteFile(manifest, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		_, answer := p.dig(t, "web-0."+svc, "A")
		if len(answer) == 1 && answer[0] == "web-0."+svc+" 5 IN A 10.244.217.99" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edit did not show within 1s: %v", answer)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A broken edit keeps the last good zone.
	if err := os.WriteFile(manifest, []byte(edited+"---\nkind: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if _, answer := p.dig(t, "web-0."+svc, "A"); len(answer) != 1 {
		t.Errorf("after a broken edit: %v, want the last good answer", answer)
	}
	if !strings.Contains(p.Output(), "manifests rejected") {
		t.Error("the broken edit was not logged")
	}

	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok", "/metrics": `hdns_dns_requests_total{rcode="NXDOMAIN",type="A"} 1`} {
		resp, err := http.Get("http://" + p.http + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

func TestBinaryRejectsBadStarts(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: bad}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	// A kubeconfig naming a loopback port nothing listens on.
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--ttl", "0s", "--manifests", broken}, 2, "--ttl"},
		{[]string{"--ttl", "1500ms", "--manifests", broken}, 2, "whole seconds"},
		{[]string{"--zone", "a..b"}, 2, "--zone"},
		{[]string{"--reverse-zone", "example.com"}, 2, "not under in-addr.arpa."},
		{[]string{"--default-policy", "fastest"}, 2, `unknown step "fastest"`},
		{[]string{"--log-level", "loud"}, 2, "--log-level"},
		{[]string{"--selector", "a in ("}, 2, "--selector"},
		{[]string{"--namespace", "awx", "--manifests", broken}, 2, "do not apply to --manifests"},
		{[]string{"--manifests", broken, "--kubeconfig", kubeconfig}, 2, "exclusive"},
		{[]string{"--nosuchflag"}, 2, "unknown flag: --nosuchflag"},
		{[]string{"--coredns-configmap", "coredns-hdns", "--kubeconfig", kubeconfig}, 2, "want NAMESPACE/NAME"},
		{[]string{"--coredns-configmap", "kube-system/coredns-hdns", "--manifests", broken}, 2, "hdns corefile"},
		{[]string{"--coredns-configmap", "kube-system/coredns-hdns", "--coredns-forward", "hdns.example", "--kubeconfig", kubeconfig}, 2, "--coredns-forward"},
		{[]string{"--manifests", broken, "--admin-listen", "", "--pprof"}, 2, "--admin-listen, which is disabled"},
		{[]string{"--manifests", broken, "--forward", "dns.example"}, 2, "--forward"},
		{[]string{"--manifests", broken, "--forward-allow", "10.0.0.0/33"}, 2, "--forward-allow"},
		{[]string{"--manifests", broken, "--pods", "verified"}, 2, "--pods"},
		{[]string{"--prometheus-url", "http://127.0.0.1:9090", "--manifests", broken}, 2, "go together"},
		{[]string{"--prometheus-url", "127.0.0.1:9090", "--load-query", "up", "--manifests", broken}, 2, "want http(s)://host:port"},
		{[]string{"--prometheus-url", "http://p:9090", "--load-query", "up", "--load-interval", "10ms", "--manifests", broken}, 2, "--load-interval"},
		{[]string{"--prometheus-url", "http://p:9090", "--load-query", "up", "--load-max-age", "1s", "--manifests", broken}, 2, "--load-max-age"},
		{[]string{"--prometheus-url", "http://p:9090", "--load-query", "up", "--load-pod-label", "", "--manifests", broken}, 2, "must not be empty"},
		{[]string{"--prometheus-ca-file", "ca.pem", "--manifests", broken}, 2, "need --prometheus-url"},
		{[]string{"--prometheus-url", "https://p:9090", "--load-query", "up", "--prometheus-cert-file", "c.pem", "--manifests", broken}, 2, "--prometheus-key-file go together"},
		{[]string{"--manifests", broken}, 1, "broken.yaml:1"},
		{[]string{"--manifests", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{"--kubeconfig", filepath.Join(dir, "missing-kubeconfig")}, 1, "missing-kubeconfig"},
		{[]string{"--kubeconfig", kubeconfig}, 1, "cannot reach the Kubernetes API server"},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, append(slices.Clone(freeListens), tt.args...)...)
		cmd.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=", "KUBERNETES_SERVICE_PORT=")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tt.code || !strings.Contains(string(out), tt.want) {
			t.Errorf("hdns %v: exit %d, want %d with %q in:\n%s", tt.args, code, tt.code, tt.want, out)
		}
	}
	// No source at all, outside a cluster.
	cmd := exec.Command(bin, freeListens...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "pass --kubeconfig, or --manifests") || cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("no source: exit %d, %s", cmd.ProcessState.ExitCode(), out)
	}
	// --help exits 0 and describes the flags.
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "  --manifests string") {
		t.Errorf("--help: %v\n%s", err, out)
	}
}

// TestBinaryServesWithLoadSourceDown: a Prometheus that does not answer
// neither stops hdns from starting nor makes it unready; it is reported
// once in the log and as hdns_load_source_up 0, and least-loaded answers
// keep coming on the handout ledger.
func TestBinaryServesWithLoadSourceDown(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "awx.yaml")
	copyFile(t, "../../examples/awx.yaml", manifest)
	p := startHDNS(t, bin, "--manifests", manifest, "--default-policy", "least-loaded, first=1",
		"--prometheus-url", "http://127.0.0.1:1", "--load-query", "sum by (namespace, pod) (inflight)", "--load-interval", "200ms")
	p.awaitMetric(t, "hdns_load_source_up 0")
	resp, err := http.Get("http://" + p.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz %d with the load source down, want 200", resp.StatusCode)
	}
	for range 5 {
		status, answer := p.dig(t, "web-headless.awx.svc.cluster.local.", "A")
		if status != "NOERROR" || len(answer) != 1 {
			t.Fatalf("least-loaded with the load source down: %s %v", status, answer)
		}
	}
	time.Sleep(time.Second) // five more failed polls
	if n := strings.Count(p.Output(), "load source down"); n != 1 {
		t.Errorf("load source down logged %d times, want once:\n%s", n, p.Output())
	}
}

// awaitMetric waits up to 10 s for a line of /metrics to be sample, or
// fails t.
func (p *process) awaitMetric(t *testing.T, sample string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := httpGet(t, "http://"+p.http+"/metrics")
		if strings.Contains(body, "\n"+sample+"\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in /metrics after 10s:\n%s", sample, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBinaryAuthenticatesToPrometheus: with --prometheus-bearer-token-file
// hdns polls a real Prometheus behind a proxy that requires the token,
// and follows the file when the token rotates. (loadsource's tests cover
// TLS and client certificates against Prometheus's own web config.)
func TestBinaryAuthenticatesToPrometheus(t *testing.T) {
	bin := buildBinary(t)
	var token atomic.Value
	token.Store("first-token")
	prom := promtest.Start(t, time.Second, "127.0.0.1:1")
	proxy := prom.RequireBearer(t, func() string { return token.Load().(string) })
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startHDNS(t, bin, "--manifests", "../../examples/awx.yaml", "--load-interval", "200ms",
		"--prometheus-url", proxy, "--prometheus-bearer-token-file", tokenFile, "--load-query", `label_replace(label_replace(vector(1), "namespace", "awx", "", ""), "pod", "web-0", "", "")`)
	p.awaitMetric(t, "hdns_load_source_up 1")
	token.Store("second-token")
	p.awaitMetric(t, "hdns_load_source_up 0")
	if err := os.WriteFile(tokenFile, []byte("second-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.awaitMetric(t, "hdns_load_source_up 1")
}

// TestBinaryAsAPodNameserver runs one hdns as the upstream (serving the
// README manifest in zone upstream.test.) and another that serves
// cluster.local., answers pod names and forwards everything else to the
// first: a client pointed only at the second resolves all of them.
func TestBinaryAsAPodNameserver(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is not installed (apt-get install bind9-dnsutils; scripts/setup does it)")
	}
	bin := buildBinary(t)
	upstream := startHDNS(t, bin, "--manifests", "../../examples/awx.yaml", "--zone", "upstream.test.", "--reverse-zone", "none")
	front := startHDNS(t, bin, "--manifests", "../../examples/awx.yaml", "--forward", upstream.dns, "--pods", "insecure")
	for _, tc := range []struct {
		args   []string
		status string
		want   string
	}{
		{[]string{"web-0.web-headless.awx.svc.cluster.local.", "A"}, "NOERROR", "web-0.web-headless.awx.svc.cluster.local. 5 IN A 10.244.217.10"},
		{[]string{"web.awx.svc.cluster.local.", "A"}, "NOERROR", "web.awx.svc.cluster.local. 5 IN A 10.96.120.15"},
		{[]string{"10-244-217-10.awx.pod.cluster.local.", "A"}, "NOERROR", "10-244-217-10.awx.pod.cluster.local. 5 IN A 10.244.217.10"},
		{[]string{"web.awx.svc.upstream.test.", "A"}, "NOERROR", "web.awx.svc.upstream.test. 5 IN A 10.96.120.15"},
	} {
		status, answer := front.dig(t, tc.args...)
		if status != tc.status || len(answer) != 1 || answer[0] != tc.want {
			t.Errorf("dig %v via the front: %s %v, want %s %q", tc.args, status, answer, tc.status, tc.want)
		}
	}
	// The forwarded answer says recursion was available; hdns's own do not.
	host, port, _ := strings.Cut(front.dns, ":")
	out, err := exec.Command("dig", "@"+host, "-p", port, "+time=2", "+tries=1", "web.awx.svc.upstream.test.").CombinedOutput()
	if err != nil || !regexp.MustCompile(`flags: qr rd ra;`).Match(out) {
		t.Errorf("forwarded reply flags: %v\n%s", err, out)
	}
}
