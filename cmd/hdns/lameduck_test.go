package main

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// readyz returns the status of GET /readyz, or 0 when it does not answer.
func readyz(p *process) int {
	resp, err := http.Get("http://" + p.http + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBinaryLameduck: on SIGTERM /readyz fails at once, DNS keeps
// answering through the lameduck, and hdns then exits with status 0; SIGINT
// stops it at once.
func TestBinaryLameduck(t *testing.T) {
	bin := buildBinary(t)
	p := startHDNS(t, bin, "--manifests", "../../examples/awx.yaml", "--lameduck", "3s")
	if got := readyz(p); got != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: %d", got)
	}
	sent := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for readyz(p) != http.StatusServiceUnavailable {
		if time.Since(sent) > time.Second {
			t.Fatal("/readyz still not 503 a second after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if status, answer := p.dig(t, "web-0.web-headless.awx.svc.cluster.local", "A"); status != "NOERROR" || len(answer) != 1 {
		t.Errorf("a second into the lameduck: %s %v, want the answer", status, answer)
	}
	if status, _ := p.dig(t, "+tcp", "web-headless.awx.svc.cluster.local", "A"); status != "NOERROR" {
		t.Errorf("over TCP a second into the lameduck: %s", status)
	}
	select {
	case <-p.Exited():
		t.Fatalf("hdns exited %v after SIGTERM, within its 3 s lameduck", time.Since(sent))
	default:
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("hdns did not exit after its lameduck: %v", err)
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after the lameduck, want 0", code)
	}

	quick := startHDNS(t, bin, "--manifests", "../../examples/awx.yaml", "--lameduck", "30s")
	quick.Cmd.Process.Signal(syscall.SIGINT)
	if err := quick.Wait(10 * time.Second); err != nil {
		t.Fatalf("SIGINT did not stop hdns (lameduck 30s): %v", err)
	}
}
