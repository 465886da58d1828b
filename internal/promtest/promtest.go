// Package promtest runs a real Prometheus server, the Debian package's
// prometheus binary, on loopback for tests: the load source's tests and the
// e2e suite both scrape real backends with it. It is a package of its own,
// not a _test file, so that both can import it; nothing else should.
package promtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a running prometheus process.
type Server struct {
	// URL is where it serves its API: http://127.0.0.1:port.
	URL string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	logs *logBuffer

	once    sync.Once
	stopErr error
}

// Start runs prometheus on a free 127.0.0.1 port with its storage in a
// temporary directory of t, scraping targets (host:port) every scrape with
// honor_labels (so that the targets' own namespace and pod labels are kept
// as they are), and waits until it is ready. It stops the server at the end
// of t and reports there an exit that Stop did not cause. It fails t when
// prometheus is not installed or does not get ready within 15 s.
func Start(t testing.TB, scrape time.Duration, targets ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (%v): run scripts/setup (it installs the Debian package prometheus)", err)
	}
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
	s := &Server{URL: "http://" + addr, done: make(chan struct{}), logs: new(logBuffer)}
	s.cmd = exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		if resp, err := client.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if s.Exited() {
			t.Fatalf("prometheus exited: %v\n%s", s.cmd.ProcessState, s.logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 15s:\n%s", s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Exited reports whether the process has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, and SIGKILL after 10 s. It returns an error when the
// process had exited before (a crash), or needed SIGKILL. Later calls
// return the first call's result.
func (s *Server) Stop() error {
	s.once.Do(func() {
		if s.Exited() {
			s.stopErr = fmt.Errorf("prometheus exited by itself: %v\n%s", s.cmd.ProcessState, s.logs)
			return
		}
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
			s.stopErr = fmt.Errorf("prometheus did not stop within 10s of SIGTERM\n%s", s.logs)
		}
	})
	return s.stopErr
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// logBuffer collects the process's output; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
