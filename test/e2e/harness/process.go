package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// stopGrace is how long a process gets between SIGTERM and SIGKILL.
	stopGrace = 10 * time.Second
	// killWait bounds the wait for a process to disappear after SIGKILL.
	killWait = 10 * time.Second
)

// process is one supervised child process whose stdout and stderr are
// appended to a log file. A process can be started again after it stopped
// (used to restart the API server with identical flags).
type process struct {
	name    string
	path    string
	args    []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait returned; nil before the first start
	err  error         // cmd.Wait result, valid after done is closed
}

// start launches the process. It fails if the process is already running.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running (pid %d)", p.name, p.cmd.Process.Pid)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", p.name, err)
	}
	fmt.Fprintf(f, "==== hdns-e2e harness: starting %s at %s\n==== %s %s\n",
		p.name, time.Now().Format(time.RFC3339Nano), p.path, strings.Join(p.args, " "))

	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Stdin = nil
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start %s: %w", p.name, p.path, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		f.Close()
		close(done)
	}()
	return nil
}

// exited returns a channel closed when the current run of the process ends,
// or nil if it was never started.
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// exitErr describes how the last run ended. Only meaningful once exited() is closed.
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		return fmt.Errorf("%s exited with status 0", p.name)
	}
	return fmt.Errorf("%s exited: %w", p.name, p.err)
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and returns once the
// process was reaped and no longer shows up in /proc. Stopping a process that
// is not running is a no-op.
func (p *process) stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	pid := cmd.Process.Pid
	signalGroup(pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopGrace):
		signalGroup(pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(killWait):
			return fmt.Errorf("%s (pid %d) did not exit %v after SIGKILL", p.name, pid, killWait)
		}
	}
	// cmd.Wait has reaped the process; make sure the kernel agrees (threads of
	// a dying process can linger briefly) before ports are reused.
	deadline := time.Now().Add(killWait)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) still present in /proc %v after exit", p.name, pid, killWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// signalGroup signals the process group led by pid (children are started
// with Setpgid), falling back to the process itself.
func signalGroup(pid int, sig syscall.Signal) {
	if err := syscall.Kill(-pid, sig); err != nil {
		_ = syscall.Kill(pid, sig)
	}
}

// processGone reports whether pid no longer names a live process: either
// /proc/PID is absent or the process is a zombie (Z) or dead (X).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist) || !procAvailable()
	}
	// Format: "pid (comm) S ..."; comm may contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state == 'Z' || state == 'X'
}

// procAvailable reports whether /proc is mounted; without it processGone
// relies on cmd.Wait alone.
func procAvailable() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// tail returns up to n last lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxRead = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot seek %s: %v)", path, err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 at the
// time of the call. All listeners are held until every port is chosen so the
// same port is never returned twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitPortFree waits until 127.0.0.1:port can be bound again, up to timeout.
func waitPortFree(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d still in use after %v: %w", port, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
