//go:build linux

package server

import (
	"errors"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/internal/fixture"
	"github.com/miekg/dns"
)

// TestReplyOverInterfaceMTU serves in a network namespace of its own
// whose loopback MTU is 1000, and asks for an answer of about 1030 bytes
// with an EDNS buffer of 1232. The reply must not be fragmented (RFC 9715):
// the client gets TC with the question and OPT only, then the whole answer
// over TCP. By default the kernel would fragment the reply instead, and
// the client would see all 60 records over UDP.
func TestReplyOverInterfaceMTU(t *testing.T) {
	// The namespace belongs to this thread: sockets made here live in it
	// whichever thread uses them later. The thread is never unlocked, so
	// it ends with the test instead of going back to the scheduler.
	runtime.LockOSThread()
	if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("a network namespace needs CAP_SYS_ADMIN: %v", err)
		}
		t.Fatal(err)
	}
	if err := loopbackUp(1000); err != nil {
		t.Fatal(err)
	}
	snap := fixture.Build(t, nil, fixture.BigService("sixty", 5, 60)...)
	const name = "sixty.awx.svc.cluster.local."

	check := func(path string, s *Server) {
		t.Helper()
		m := fixture.Query(name, dns.TypeA)
		m.SetEdns0(1232, false)
		wire := rawExchange(t, s, m)
		if wire == nil {
			t.Fatalf("%s: no reply over UDP: the reply over the MTU was dropped", path)
		}
		var r dns.Msg
		if err := r.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || len(r.Answer) != 0 || len(r.Question) != 1 || r.IsEdns0() == nil {
			t.Errorf("%s UDP: TC=%v, %d bytes, %d answers, %d questions, OPT %v; want TC with the question and OPT only",
				path, r.Truncated, len(wire), len(r.Answer), len(r.Question), r.IsEdns0() != nil)
		}
		if tcp := exchange(t, s, m, "tcp"); tcp.Truncated || len(tcp.Answer) != 60 {
			t.Errorf("%s TCP: TC=%v with %d answers, want all 60", path, tcp.Truncated, len(tcp.Answer))
		}
		// Replies under the MTU are unchanged.
		if r := exchange(t, s, fixture.Query(name, dns.TypeA), "udp"); !r.Truncated || len(r.Answer) == 0 {
			t.Errorf("%s 512-byte UDP: TC=%v with %d answers, want a partial answer", path, r.Truncated, len(r.Answer))
		}
	}
	// Not subtests: their goroutines could run on threads outside the
	// namespace, and the clients' sockets must be made inside it.
	check("batched", startServer(t, snap))

	plain := &Server{Addr: "127.0.0.1:0", Responder: responderOf(snap)}
	if err := plain.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { plain.udp.ServeOneByOne(plain.answerUDP(new(answer.Scratch))); close(done) }()
	go plain.serveTCP(t.Context())
	t.Cleanup(func() { plain.udp.UDP.Close(); plain.tcp.Close(); <-done })
	check("plain", plain)
}

// loopbackUp sets the MTU of this network namespace's lo and brings it up,
// which also gives it 127.0.0.1.
func loopbackUp(mtu int) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var req struct {
		name  [syscall.IFNAMSIZ]byte
		value int32 // ifr_mtu, or ifr_flags in its first two bytes
		_     [20]byte
	}
	copy(req.name[:], "lo")
	ioctl := func(op uintptr) error {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), op, uintptr(unsafe.Pointer(&req))); e != 0 {
			return e
		}
		return nil
	}
	req.value = int32(mtu)
	if err := ioctl(syscall.SIOCSIFMTU); err != nil {
		return err
	}
	req.value = 0
	if err := ioctl(syscall.SIOCGIFFLAGS); err != nil {
		return err
	}
	req.value |= syscall.IFF_UP
	return ioctl(syscall.SIOCSIFFLAGS)
}
