package harness

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests cover the harness's plumbing without the control-plane
// binaries, so they run in a plain `go test ./...`.

func TestGenerateCredentials(t *testing.T) {
	c, err := generateCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.caPEM) {
		t.Fatal("caPEM holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("serving certificate does not verify for 127.0.0.1: %v", err)
	}
	tokens, err := os.ReadFile(c.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.token + "," + adminUser + "," + adminUser + `,"system:masters"`; strings.TrimSpace(string(tokens)) != want {
		t.Errorf("token file = %q, want %q", tokens, want)
	}
	for _, f := range []string{c.saKeyFile, c.saPubFile} {
		if b, err := os.ReadFile(f); err != nil || len(b) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(b))
		}
	}
}

func TestFindBinaries(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(BinEnv, "")
	if _, err := findBinaries(); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Errorf("unset: err = %v, want a 'not set' error", err)
	}
	t.Setenv(BinEnv, dir)
	if _, err := findBinaries(); err == nil {
		t.Error("empty dir: want an error")
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := findBinaries(); err != nil || got != dir {
		t.Errorf("findBinaries() = %q, %v; want %q", got, err, dir)
	}
}

func TestProcessStartStop(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip(err) // plumbing test only; the e2e tests never skip
	}
	p := &process{name: "sleep", path: sleep, args: []string{"60"}, logPath: filepath.Join(t.TempDir(), "sleep.log")}
	for round := range 2 { // a stopped process can be started again
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		if err := p.start(); err == nil {
			t.Fatal("second start of a running process succeeded")
		}
		pid := p.cmd.Process.Pid
		begin := time.Now()
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
		if !processGone(pid) {
			t.Errorf("round %d: pid %d still alive after stop", round, pid)
		}
		if d := time.Since(begin); d > stopGrace {
			t.Errorf("round %d: stop took %v; SIGTERM should suffice", round, d)
		}
	}
	if err := p.stop(); err != nil {
		t.Errorf("stopping a stopped process: %v", err)
	}
	if log := tail(p.logPath, 50); strings.Count(log, "starting sleep") != 2 {
		t.Errorf("log should record two starts:\n%s", log)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 100 {
		b.WriteString(strings.Repeat("x", i%7) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(tail(path, 50), "\n"); got != 49 {
		t.Errorf("tail(50) has %d newlines, want 49", got)
	}
}
