// Package server is hdns's DNS transport: the UDP and TCP sockets, their
// read loops and limits (workers, TCP connections per client, idle
// timeouts), and the hand-off of each query to answering, and of those it
// sends upstream to forwarding, off the read loop.
//
// It decides nothing about replies: what a query gets is the answer
// package's, how upstreams are asked the forward package's. It must not
// import zone or policy itself (answering reads them), nor the admin
// package.
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/forward"
	"github.com/hdns-dev/hdns/server/rrl"
	"github.com/hdns-dev/hdns/server/udpio"
	"github.com/hdns-dev/hdns/server/wire"
)

// Server serves DNS over UDP and TCP on one address. The zero value of each
// optional field is its documented default.
type Server struct {
	// Addr is the host:port for both UDP and TCP; with port 0 both get the
	// same free port.
	Addr string
	// Responder answers every query.
	Responder *answer.Responder
	// Forward resolves the queries Responder hands to forwarding; nil
	// drops them.
	Forward *forward.Forwarder
	// UDPWorkers is the number of goroutines reading the UDP socket;
	// 0 means 2 × GOMAXPROCS.
	UDPWorkers int
	// TCPIdleTimeout closes a TCP connection that sends no query for this
	// long; 0 means 10s (RFC 7766 asks for seconds, not minutes).
	TCPIdleTimeout time.Duration
	// TCPMessageTimeout closes a TCP connection that starts a message (its
	// length or body) and does not finish it within this long; 0 means 2s.
	TCPMessageTimeout time.Duration
	// MaxTCPConns caps concurrent TCP connections; 0 means 1024. Further
	// connections are closed at once, and while more than half are taken
	// a connection is closed 1s after its last activity (sooner, never
	// later, than it would be otherwise).
	MaxTCPConns int
	// MaxTCPConnsPerClient caps one source address's concurrent TCP
	// connections; 0 means MaxTCPConns/8.
	MaxTCPConnsPerClient int
	// RateLimit, when set, limits the UDP replies of the Responder per
	// client prefix (drops them, or slips them as a question with TC); TCP
	// replies and forwarded ones are never limited.
	RateLimit *rrl.Limiter
	// Metrics, when set, counts TCP connections accepted, refused and
	// closed by the server.
	Metrics *Metrics
	// Log receives I/O errors; nil logs nowhere.
	Log *slog.Logger

	udp *udpio.Conn
	tcp *net.TCPListener
	// forwarding holds a token per UDP query being forwarded.
	forwarding chan struct{}
}

// Listen binds the UDP and TCP sockets.
func (s *Server) Listen() error {
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("server: listen address %q: %w", s.Addr, err)
	}
	// With port 0, the TCP port picked by the kernel may be taken for UDP:
	// try a few times.
	for attempt := 0; ; attempt++ {
		tl, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			return fmt.Errorf("server: listen on TCP %s: %w", s.Addr, err)
		}
		tcpAddr := tl.Addr().(*net.TCPAddr)
		ul, err := net.ListenUDP("udp", &net.UDPAddr{IP: tcpAddr.IP, Port: tcpAddr.Port, Zone: tcpAddr.Zone})
		if err != nil {
			tl.Close()
			if port == "0" && attempt < 10 {
				continue
			}
			return fmt.Errorf("server: listen on UDP %s: %w", s.Addr, err)
		}
		s.tcp = tl.(*net.TCPListener)
		s.udp = &udpio.Conn{UDP: ul, Shrink: shrinkOverMTU, LogError: s.logError}
		udpio.DontFragment(ul)
		s.forwarding = make(chan struct{}, maxForwarding)
		if tcpAddr.IP.IsUnspecified() {
			// Ask for each packet's destination address. One of the two
			// fails on a socket of the other family only.
			err4 := ipv4.NewPacketConn(ul).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
			err6 := ipv6.NewPacketConn(ul).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
			if err4 != nil && err6 != nil {
				ul.Close()
				tl.Close()
				return fmt.Errorf("server: UDP destination addresses on %s: %w", s.Addr, errors.Join(err4, err6))
			}
			s.udp.PacketInfo = true
		}
		return nil
	}
}

// UDPAddr is the bound UDP address; valid after Listen.
func (s *Server) UDPAddr() netip.AddrPort { return s.udp.UDP.LocalAddr().(*net.UDPAddr).AddrPort() }

// TCPAddr is the bound TCP address; valid after Listen.
func (s *Server) TCPAddr() netip.AddrPort { return s.tcp.Addr().(*net.TCPAddr).AddrPort() }

// Serve answers queries until ctx is done, then stops accepting: it closes
// the UDP socket and the TCP listener, ends idle TCP connections at once,
// and lets each connection inside a message finish reading, answering and
// writing it, for up to TCPMessageTimeout, before closing it. It returns
// once its goroutines have ended. Listen must have been called.
func (s *Server) Serve(ctx context.Context) error {
	workers := s.UDPWorkers
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(s.serveUDP)
	}
	wg.Go(func() { s.serveTCP(ctx) })
	<-ctx.Done()
	s.udp.UDP.Close()
	s.tcp.Close()
	wg.Wait()
	return nil
}

// serveUDP answers UDP queries until the socket is closed; Serve runs
// UDPWorkers of it.
func (s *Server) serveUDP() { s.udp.Serve(s.answerUDP(new(answer.Scratch))) }

// answerUDP answers with scratch, which the returned function owns, and
// hands queries that go upstream to forwardUDP.
func (s *Server) answerUDP(scratch *answer.Scratch) udpio.Answer {
	return func(pkt []byte, from netip.AddrPort, src []byte) []byte {
		client := from.Addr().Unmap()
		out, result := s.respond(pkt, client, false, scratch)
		if result == answer.Forward {
			s.forwardUDP(bytes.Clone(pkt), bytes.Clone(src), from)
		}
		return s.RateLimit.Limit(client, out)
	}
}

// shrinkOverMTU cuts a reply that does not fit the interface MTU to its
// header, question and OPT record, with TC set, so that the client asks
// again over TCP (RFC 9715 R4). It reuses out's bytes; ok is false when
// there was nothing left to cut.
func shrinkOverMTU(out []byte) (_ []byte, ok bool) {
	n := len(out)
	short, err := wire.Truncate(out, 0)
	return short, err == nil && len(short) < n
}

// maxForwarding bounds the UDP queries being forwarded at once; past it,
// further ones are dropped (the client retries).
const maxForwarding = 1024

// forwardUDP resolves a query upstream on its own goroutine, so that the
// read loop never waits for an upstream, and sends the reply from src.
func (s *Server) forwardUDP(pkt, src []byte, to netip.AddrPort) {
	if s.Forward == nil {
		return
	}
	select {
	case s.forwarding <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-s.forwarding }()
		if out := s.forwarded(pkt, false); out != nil {
			s.udp.Write(out, src, to)
		}
	}()
}

// forwarded returns the reply to a query that goes upstream, counted with
// the answers, or nil for none.
func (s *Server) forwarded(pkt []byte, tcp bool) []byte {
	if s.Forward == nil {
		return nil
	}
	start := time.Now()
	out, qtype, rcode := s.Forward.Reply(context.Background(), pkt, tcp)
	if out != nil {
		s.Responder.Metrics.Count(qtype, rcode, time.Since(start).Seconds())
	}
	return out
}

// respond answers one query. A panic while answering (a bug) drops that
// query and is logged, instead of ending the process.
func (s *Server) respond(pkt []byte, client netip.Addr, tcp bool, scratch *answer.Scratch) (out []byte, result answer.Result) {
	defer func() {
		if p := recover(); p != nil {
			out, result = nil, answer.Drop
			*scratch = answer.Scratch{}
			if s.Log != nil {
				s.Log.Error("panic answering a query; dropped it", "panic", p, "client", client)
			}
		}
	}()
	return s.Responder.Respond(pkt, client, tcp, scratch)
}

func (s *Server) logError(op string, err error) {
	if s.Log != nil {
		s.Log.Warn("dns i/o error", "op", op, "err", err)
	}
}
