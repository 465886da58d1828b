// Package testproc runs the child processes of tests: hdns, CoreDNS, Knot,
// Prometheus, test backends and clients. The e2e suite, the benchmarks and
// the load source's tests all start processes the same way, so they share
// this. It owns a child's start, output capture, liveness and stop within
// a test. It is not a _test file so that all of them can import it, but it
// is test-only: no production package may import it. It imports only the
// standard library. (test/e2e/harness supervises the control plane's
// processes differently: log files, restarts, process groups.)
package testproc

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// stopGrace is how long a process gets between SIGINT and SIGKILL.
	stopGrace = 10 * time.Second
	// keptOutput bounds the output a Proc keeps: the last bytes.
	keptOutput = 1 << 20
)

// Proc is a running child process of a test. Its stdout and stderr are
// kept (at least the last half MiB); it is stopped at the end of the test that started
// it, which fails if the process exited before that unasked; its output
// is logged when the test failed.
type Proc struct {
	Name string
	Cmd  *exec.Cmd

	out    output
	exited chan struct{} // closed once Cmd.Wait returned

	stopOnce sync.Once
	stopErr  error
	asked    atomic.Bool // the test called Stop: it reads the error itself
}

// Start starts cmd, whose Stdout and Stderr must be unset; without
// SysProcAttr the process is killed if the test process dies. It fails t
// when cmd does not start.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: cmd, exited: make(chan struct{})}
	if cmd.Stdout != nil || cmd.Stderr != nil {
		t.Fatalf("start %s: testproc keeps the output itself", name)
	}
	// One writer for both: exec then calls it from one goroutine at a
	// time, and lines of the two streams stay whole.
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	// A grandchild holding the output pipes must not hold Wait forever.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		if err := p.stop(); err != nil && !p.asked.Load() {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s %s output (last 8000 bytes):\n%s", name, strings.Join(cmd.Args, " "), p.Tail(8000))
		}
	})
	return p
}

// Stop ends the process: SIGINT, then SIGKILL after 10 s. SIGINT, not
// SIGTERM: hdns answers SIGTERM with its lameduck (seconds of draining),
// SIGINT by stopping at once, and the other servers tests run stop on
// either. It returns an
// error when the process had exited by itself before Stop was first
// called, or needed SIGKILL; later calls return the first call's result.
// Once a test has called Stop, the end of the test reports nothing more.
func (p *Proc) Stop() error {
	p.asked.Store(true)
	return p.stop()
}

func (p *Proc) stop() error {
	p.stopOnce.Do(func() {
		if !p.Alive() {
			p.stopErr = fmt.Errorf("%s exited by itself: %v\n%s", p.Name, p.Cmd.ProcessState, p.Tail(8000))
			return
		}
		p.Cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.exited:
		case <-time.After(stopGrace):
			p.Cmd.Process.Kill()
			<-p.exited
			p.stopErr = fmt.Errorf("%s did not stop within %v of SIGINT", p.Name, stopGrace)
		}
	})
	return p.stopErr
}

// Wait waits up to timeout for a process that is to end by itself (a
// client with a fixed run time), then stops it if it has not; it returns
// an error only when the process had to be stopped. The exit status is in
// p.Cmd.ProcessState. The end of the test then reports nothing more.
func (p *Proc) Wait(timeout time.Duration) error {
	p.asked.Store(true)
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		p.stop()
		return fmt.Errorf("%s did not end within %v", p.Name, timeout)
	}
}

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Alive reports whether the process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid is the process's ID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Output is what the process wrote to stdout and stderr (at least the last
// half MiB).
func (p *Proc) Output() string { return p.out.String() }

// Tail is the last n bytes of Output.
func (p *Proc) Tail(n int) string {
	s := p.Output()
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// HDNSServing matches the line hdns logs once it serves: its DNS and HTTP
// addresses are the submatches (for WaitLine).
var HDNSServing = regexp.MustCompile(`msg="hdns serving" dns=(\S+) http=(\S+)`)

// HDNSAdmin matches the same line when hdns serves its debug endpoints
// (--admin-listen, not ""): their address is the submatch.
var HDNSAdmin = regexp.MustCompile(`msg="hdns serving" dns=\S+ http=\S+ admin=(\S+)`)

// ErrExited is returned by WaitLine when the process exits first.
var ErrExited = errors.New("exited")

// WaitLine waits until a line of the process's output matches re and
// returns the line's submatches. It polls the output every 10 ms; it
// fails, with the process's state and output, when the process exits
// first or timeout passes.
func (p *Proc) WaitLine(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(p.Output(), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				return m, nil
			}
		}
		if !p.Alive() {
			return nil, fmt.Errorf("%s %w before a line matched %q: %v\n%s", p.Name, ErrExited, re, p.Cmd.ProcessState, p.Tail(8000))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s wrote no line matching %q within %v:\n%s", p.Name, re, timeout, p.Tail(8000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// output keeps the last keptOutput bytes written to it; safe for
// concurrent use.
type output struct {
	mu sync.Mutex
	b  []byte
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b = append(o.b, b...)
	if len(o.b) > keptOutput {
		// Half at a time, so that a chatty process costs a copy per
		// half MiB, not per write.
		o.b = append(o.b[:0], o.b[len(o.b)-keptOutput/2:]...)
	}
	return len(b), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.b)
}

// FreePort returns a loopback port free for both UDP and TCP right now,
// for a child that must be told its port before it starts (a DNS server
// that another child forwards to).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free loopback port for UDP and TCP")
	return 0
}
