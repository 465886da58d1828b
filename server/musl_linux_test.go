package server

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/hdns-dev/hdns/server/wire"
)

// requireMusl, when set (scripts/test sets it), makes the musl test fail
// where it would skip: not root, or no musl-gcc (Debian's musl-tools,
// which scripts/setup installs).
const requireMusl = "HDNS_REQUIRE_MUSL"

// muslResolver is a getaddrinfo client: it prints the IPv4 addresses of
// its argument, one a line, or "error: " and the reason.
const muslResolver = `#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
int main(int argc, char **argv) {
	struct addrinfo hints = {0}, *res, *p;
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	int err = getaddrinfo(argv[1], NULL, &hints, &res);
	if (err) {
		printf("error: %s\n", gai_strerror(err));
		return 2;
	}
	for (p = res; p; p = p->ai_next) {
		char buf[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &((struct sockaddr_in *)p->ai_addr)->sin_addr, buf, sizeof buf);
		printf("%s\n", buf);
	}
	return 0;
}
`

// skipMusl skips t for why, or fails it under requireMusl.
func skipMusl(t *testing.T, why string) {
	t.Helper()
	if os.Getenv(requireMusl) != "" {
		t.Fatalf("%s (%s is set)", why, requireMusl)
	}
	t.Skip(why)
}

// TestMuslLivesOnTruncatedAnswers: musl before 1.2.4 (Alpine before 3.18)
// never retries over TCP, and uses the records of a truncated UDP answer.
// A real musl getaddrinfo resolving a 100-endpoint headless Service
// through hdns, whose truncated answers carry the records that fit, gets
// addresses; through a server that answers as Knot and BIND do, the
// question alone with TC, it gets none.
//
// musl reads only /etc/resolv.conf, with port 53: the resolver runs in a
// mount namespace of its own (unshare) where a resolv.conf naming the
// server is bind-mounted over /etc/resolv.conf, and the servers listen on
// port 53 of loopback addresses. That takes root; the host is left as it
// was.
func TestMuslLivesOnTruncatedAnswers(t *testing.T) {
	if os.Geteuid() != 0 {
		skipMusl(t, "the musl test needs root (a mount namespace and port 53)")
	}
	cc, err := exec.LookPath("musl-gcc")
	if err != nil {
		skipMusl(t, "musl-gcc is not installed (Debian's musl-tools; scripts/setup installs it)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		skipMusl(t, "unshare is not installed (util-linux)")
	}
	dir := t.TempDir()
	src, resolver := filepath.Join(dir, "resolve.c"), filepath.Join(dir, "resolve")
	if err := os.WriteFile(src, []byte(muslResolver), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-static", "-O1", "-o", resolver, src).CombinedOutput(); err != nil {
		t.Fatalf("musl-gcc: %v\n%s", err, out)
	}
	t.Logf("musl %s", muslVersion())

	const addr = "127.0.0.153:53"
	probe, err := net.ListenPacket("udp", addr)
	if err != nil {
		skipMusl(t, "cannot listen on port 53: "+err.Error())
	}
	probe.Close()
	hdns := serve(t, &Server{Addr: addr, Responder: responderOf(fixture.Cluster(t))})
	questionOnly := questionOnlyServer(t, "127.0.0.154:53")

	const name = "big.awx.svc.cluster.local."
	got := muslResolve(t, resolver, hdns.UDPAddr().Addr(), name)
	if len(got) == 0 || !strings.HasPrefix(got[0], "10.3.") {
		t.Fatalf("musl through hdns: %q, want addresses of big", got)
	}
	t.Logf("musl through hdns: %d addresses (%s …)", len(got), got[0])
	if got := muslResolve(t, resolver, questionOnly, name); len(got) != 1 || !strings.HasPrefix(got[0], "error: ") {
		t.Fatalf("musl through a question-only TC server: %q, want an error", got)
	}
	t.Logf("musl through a question-only TC server: %s", muslResolve(t, resolver, questionOnly, name)[0])
}

// muslVersion is the version musl's dynamic loader reports, or "of an
// unknown version".
func muslVersion() string {
	loaders, _ := filepath.Glob("/lib/ld-musl-*.so.1")
	if len(loaders) == 0 {
		return "of an unknown version"
	}
	out, _ := exec.Command(loaders[0]).CombinedOutput()
	if m := regexp.MustCompile(`Version (\S+)`).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "of an unknown version"
}

// muslResolve runs resolver for name in a mount namespace whose
// /etc/resolv.conf names only server, and returns its lines.
func muslResolve(t *testing.T, resolver string, server netip.Addr, name string) []string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+server.String()+"\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
		`mount --bind "$1" /etc/resolv.conf; exec "$2" "$3"`, "sh", conf, resolver, name)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2) {
		t.Fatalf("unshare and resolve: %v\n%s%s", err, out, exitStderr(err))
	}
	return strings.Split(string(bytes.TrimSpace(out)), "\n")
}

func exitStderr(err error) []byte {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.Stderr
	}
	return nil
}

// questionOnlyServer answers every UDP query on addr as Knot and BIND
// answer one too large for UDP: the question alone, with TC set.
func questionOnlyServer(t *testing.T, addr string) netip.Addr {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < wire.HeaderLen {
				continue
			}
			buf[2] |= 0x80 // QR
			if reply, err := wire.QuestionOnly(buf[:n]); err == nil {
				c.WriteToUDPAddrPort(reply, from)
			}
		}
	}()
	return netip.MustParseAddrPort(addr).Addr()
}
