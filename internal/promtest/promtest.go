// Package promtest runs a real Prometheus server, the Debian package's
// prometheus binary, on loopback for tests: the load source's tests and the
// e2e suite both scrape real backends with it. It also finds that
// package's promtool for the tests that check rule files and dashboards.
//
// It owns finding the binaries, the server's configuration and its
// lifetime within a test. It is a package of its own, not a _test file, so
// that several test packages can import it; no production package may
// import it. It imports only the standard library and internal/testproc.
//
// Without a prometheus (or promtool) binary on PATH the tests that need
// one skip, so that `go test ./...` runs anywhere; with RequireEnv set
// (scripts/test sets it) they fail instead, so that the full run never
// passes without them.
package promtest

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hdns-dev/hdns/internal/testproc"
)

// Server is a running prometheus process.
type Server struct {
	// URL is where it serves its API: http://127.0.0.1:port, or https://
	// with Options.Scheme "https".
	URL string

	p *testproc.Proc
}

// Start runs prometheus on a free 127.0.0.1 port with its storage in a
// temporary directory of t, scraping targets (host:port) every scrape with
// honor_labels (so that the targets' own namespace and pod labels are kept
// as they are), and waits until it is ready. It stops the server at the end
// of t and reports there an exit that Stop did not cause. It skips t when
// prometheus is not installed (fails it when RequireEnv is set; see
// Binary), and fails t when it does not get ready within 15 s.
func Start(t testing.TB, scrape time.Duration, targets ...string) *Server {
	t.Helper()
	return StartWith(t, Options{}, scrape, targets...)
}

// Options are StartWith's settings beyond Start's; the zero value starts
// the server Start starts.
type Options struct {
	// WebConfig, when set, is the content of prometheus's
	// --web.config.file: tls_server_config (cert_file, key_file,
	// client_auth_type, client_ca_file) and basic_auth_users. Relative
	// paths in it are relative to the file, in a temporary directory:
	// give absolute ones.
	WebConfig string
	// Scheme is "https" when WebConfig serves TLS; "" means "http".
	Scheme string
	// Client polls /-/ready; nil means a client with a 1 s timeout. With
	// WebConfig it must pass what the server asks (its CA, a client
	// certificate, credentials).
	Client *http.Client
}

// StartWith is Start with opts.
func StartWith(t testing.TB, opts Options, scrape time.Duration, targets ...string) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = fmt.Sprintf("%q", target)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
  evaluation_interval: %s
scrape_configs:
- job_name: backends
  honor_labels: true
  static_configs:
  - targets: [%s]
`, scrape, scrape/2, scrape, strings.Join(quoted, ", "))), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}
	if opts.WebConfig != "" {
		web := filepath.Join(dir, "web.yml")
		if err := os.WriteFile(web, []byte(opts.WebConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--web.config.file="+web)
	}
	s := &Server{URL: cmp.Or(opts.Scheme, "http") + "://" + addr}
	s.p = testproc.Start(t, "prometheus", exec.Command(bin, args...))
	s.awaitReady(t, cmp.Or(opts.Client, &http.Client{Timeout: time.Second}))
	return s
}

// awaitReady waits until /-/ready answers 200 to client, or fails t.
func (s *Server) awaitReady(t testing.TB, client *http.Client) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if resp, err := client.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if s.Exited() {
			t.Fatalf("prometheus exited: %v\n%s", s.p.Cmd.ProcessState, s.p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 15s:\n%s", s.p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RequireEnv names the environment variable that, set to anything but ""
// or "0", makes a missing prometheus or promtool binary fail the tests that
// need it instead of skipping them.
const RequireEnv = "HDNS_REQUIRE_PROMETHEUS"

// Binary returns the path of the prometheus binary on PATH. Without one
// it skips t, or fails it when RequireEnv is set; either way it does not
// return.
func Binary(t testing.TB) string {
	t.Helper()
	return lookPath(t, "prometheus", "a real Prometheus server")
}

// Promtool returns the path of the promtool binary on PATH (the same
// Debian package ships it), for tests that check rule files and PromQL
// expressions. Without one it skips or fails t as Binary does.
func Promtool(t testing.TB) string {
	t.Helper()
	return lookPath(t, "promtool", "promtool")
}

// lookPath finds name on PATH, or skips t (fails it when RequireEnv is
// set) saying the test needs what.
func lookPath(t testing.TB, name, what string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	const install = "run scripts/setup (it installs the Debian package prometheus)"
	if v := os.Getenv(RequireEnv); v != "" && v != "0" {
		t.Fatalf("%s is not installed (%v) and %s is set: %s", name, err, RequireEnv, install)
	}
	t.Skipf("this test needs %s and %s is not installed (%v); %s, or set %s=1 to make this a failure", what, name, err, install, RequireEnv)
	return ""
}

// RequireBearer serves s's API on a new loopback URL, which it returns,
// that forwards only requests carrying "Authorization: Bearer <token()>"
// and answers 401 to others: Prometheus itself checks no bearer tokens,
// the proxies in front of it (kube-rbac-proxy, managed services) do. token
// is called for every request, so a test may change it. The proxy closes
// at the end of t.
func (s *Server) RequireBearer(t testing.TB, token func() string) string {
	t.Helper()
	target, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	backend := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token() {
			http.Error(w, "bearer token required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	return proxy.URL
}

// Exited reports whether the process has exited.
func (s *Server) Exited() bool { return !s.p.Alive() }

// Stop sends SIGTERM, and SIGKILL after 10 s. It returns an error when the
// process had exited before (a crash), or needed SIGKILL. Later calls
// return the first call's result.
func (s *Server) Stop() error { return s.p.Stop() }

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
