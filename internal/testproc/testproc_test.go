package testproc

import (
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestProc(t *testing.T) {
	p := Start(t, "sh", exec.Command("sh", "-c", "echo starting >&2; echo serving on 127.0.0.1:53; exec sleep 60"))
	m, err := p.WaitLine(regexp.MustCompile(`serving on (\S+)`), 10*time.Second)
	if err != nil || m[1] != "127.0.0.1:53" {
		t.Fatalf("WaitLine: %v, %v", m, err)
	}
	if !strings.Contains(p.Output(), "starting\n") || !p.Alive() || p.Pid() <= 0 {
		t.Errorf("output %q, alive %v, pid %d", p.Output(), p.Alive(), p.Pid())
	}
	if err := p.Stop(); err != nil || p.Alive() {
		t.Errorf("Stop: %v, alive %v", err, p.Alive())
	}

	// A process that exits by itself: WaitLine says so, and so does Stop.
	q := Start(t, "false", exec.Command("sh", "-c", "echo bye; exit 3"))
	if _, err := q.WaitLine(regexp.MustCompile(`never`), 10*time.Second); !errors.Is(err, ErrExited) {
		t.Errorf("WaitLine on an exited process: %v", err)
	}
	if err := q.Stop(); err == nil || !strings.Contains(err.Error(), "exited by itself") || !strings.Contains(err.Error(), "bye") {
		t.Errorf("Stop of a process that exited: %v", err)
	}

	// A process meant to end by itself: Wait, and no complaint after.
	w := Start(t, "true", exec.Command("true"))
	if err := w.Wait(10 * time.Second); err != nil || w.Alive() {
		t.Errorf("Wait: %v, alive %v", err, w.Alive())
	}
	v := Start(t, "sleep", exec.Command("sleep", "60"))
	if err := v.Wait(50 * time.Millisecond); err == nil || v.Alive() {
		t.Errorf("Wait past its timeout: %v, alive %v", err, v.Alive())
	}

	// A line that never comes: WaitLine gives up after its timeout.
	r := Start(t, "sleep", exec.Command("sleep", "60"))
	if _, err := r.WaitLine(regexp.MustCompile(`never`), 50*time.Millisecond); err == nil || errors.Is(err, ErrExited) {
		t.Errorf("WaitLine past its timeout: %v", err)
	}
}

func TestOutputKeepsTheEnd(t *testing.T) {
	var o output
	line := strings.Repeat("x", 1000) + "\n"
	for range 3 * keptOutput / len(line) {
		o.Write([]byte(line))
	}
	o.Write([]byte("last\n"))
	s := o.String()
	if len(s) > keptOutput || len(s) < keptOutput/2 || !strings.HasSuffix(s, "last\n") {
		t.Errorf("kept %d bytes ending %q; want between %d and %d ending with the last write", len(s), s[len(s)-10:], keptOutput/2, keptOutput)
	}
}
