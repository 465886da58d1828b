package server

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hdns-dev/hdns/server/answer"
	"github.com/hdns-dev/hdns/server/wire"
)

// pressureIdleTimeout is how long a TCP connection may stay silent while
// more than half of the connection slots are taken (RFC 7766 6.2.3).
const pressureIdleTimeout = time.Second

type tcpLimits struct {
	maxConns, maxPerClient int
	idle, message          time.Duration
}

func (s *Server) tcpLimits() tcpLimits {
	l := tcpLimits{maxConns: s.MaxTCPConns, maxPerClient: s.MaxTCPConnsPerClient, idle: s.TCPIdleTimeout, message: s.TCPMessageTimeout}
	if l.maxConns <= 0 {
		l.maxConns = 1024
	}
	if l.maxPerClient <= 0 {
		l.maxPerClient = max(1, l.maxConns/8)
	}
	if l.idle <= 0 {
		l.idle = 10 * time.Second
	}
	if l.message <= 0 {
		l.message = 2 * time.Second
	}
	return l
}

// tcpConn is one accepted connection. Its own goroutine reads and writes
// it and moves its read deadline on each activity; the accept loop may
// only bring that deadline closer, counting from the last activity, so
// that no connect by anyone keeps another connection open.
type tcpConn struct {
	net.Conn
	from netip.Addr

	// mu guards lastActive and deadline. It is the connection's own:
	// taken by its goroutine twice per message and by the accept loop
	// under pressure, never across connections.
	mu         sync.Mutex
	lastActive time.Time
	deadline   time.Time
	// idle: the connection waits for a message to begin.
	idle bool
	// draining: the server stops; the connection ends when next idle.
	draining bool
}

// arm sets the read deadline to timeout after now, the connection's
// latest activity; idle says whether it now waits for a message to begin.
// A draining connection that turns idle gets the deadline now: it ends
// instead of waiting.
func (c *tcpConn) arm(now time.Time, timeout time.Duration, idle bool) {
	c.mu.Lock()
	c.lastActive, c.deadline, c.idle = now, now.Add(timeout), idle
	if idle && c.draining {
		c.deadline = now
	}
	c.Conn.SetReadDeadline(c.deadline)
	c.mu.Unlock()
}

// drain ends the connection once it has no message in progress: an idle
// one at once (its read deadline becomes now); one inside a message keeps
// its deadline, is answered, and ends when it next turns idle.
func (c *tcpConn) drain(now time.Time) {
	c.mu.Lock()
	c.draining = true
	if c.idle && now.Before(c.deadline) {
		c.deadline = now
		c.Conn.SetReadDeadline(now)
	}
	c.mu.Unlock()
}

// shorten brings the read deadline to timeout after the last activity
// when that is sooner than the deadline set; it never extends it.
func (c *tcpConn) shorten(timeout time.Duration) {
	c.mu.Lock()
	if d := c.lastActive.Add(timeout); d.Before(c.deadline) {
		c.deadline = d
		c.Conn.SetReadDeadline(d)
	}
	c.mu.Unlock()
}

// tcpConns is the set of open connections and their count per client.
type tcpConns struct {
	limits tcpLimits
	// open is len(all), for the connections' goroutines to read per
	// message without the lock.
	open atomic.Int64
	// mu guards all and perClient; it is taken on connect and close only,
	// never per query.
	mu        sync.Mutex
	all       map[*tcpConn]struct{}
	perClient map[netip.Addr]int
	// done is closed once every connection's goroutine has ended.
	done chan struct{}
}

// add admits c, or says which limit refused it.
func (t *tcpConns) add(c *tcpConn) (refused string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case len(t.all) >= t.limits.maxConns:
		return "total_limit"
	case t.perClient[c.from] >= t.limits.maxPerClient:
		return "client_limit"
	}
	t.all[c] = struct{}{}
	t.perClient[c.from]++
	t.open.Store(int64(len(t.all)))
	if t.underPressure() {
		for other := range t.all {
			other.shorten(pressureIdleTimeout)
		}
	}
	return ""
}

func (t *tcpConns) remove(c *tcpConn) {
	t.mu.Lock()
	delete(t.all, c)
	if t.perClient[c.from]--; t.perClient[c.from] == 0 {
		delete(t.perClient, c.from)
	}
	t.open.Store(int64(len(t.all)))
	t.mu.Unlock()
}

// underPressure reports whether more than half of the slots are taken.
func (t *tcpConns) underPressure() bool { return t.open.Load() > int64(t.limits.maxConns/2) }

// idleTimeout is how long a connection may wait for its next message now.
func (t *tcpConns) idleTimeout() time.Duration {
	if t.underPressure() {
		return min(t.limits.idle, pressureIdleTimeout)
	}
	return t.limits.idle
}

// drain ends every connection once it has no message in progress, and
// closes those still open after the message timeout; it returns when done
// is closed. Closing the listener is the caller's.
func (t *tcpConns) drain() {
	t.mu.Lock()
	now := time.Now()
	for c := range t.all {
		c.drain(now)
	}
	t.mu.Unlock()
	limit := time.NewTimer(t.limits.message)
	defer limit.Stop()
	select {
	case <-t.done:
		return
	case <-limit.C:
	}
	t.mu.Lock()
	for c := range t.all {
		c.Close()
	}
	t.mu.Unlock()
}

// serveTCP accepts connections until the listener is closed, which Serve
// does when ctx is done; the connections then drain, and it returns once
// they have ended.
func (s *Server) serveTCP(ctx context.Context) {
	conns := &tcpConns{limits: s.tcpLimits(), all: map[*tcpConn]struct{}{}, perClient: map[netip.Addr]int{}, done: make(chan struct{})}
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(conns.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			conns.drain()
		case <-conns.done:
		}
	}()
	for {
		nc, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logError("tcp accept", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := &tcpConn{Conn: nc, from: nc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()}
		refused := "shutting_down"
		if ctx.Err() == nil {
			refused = conns.add(c)
		}
		if refused != "" {
			s.Metrics.refused(refused)
			nc.Close()
			continue
		}
		s.Metrics.accepted()
		wg.Go(func() {
			s.Metrics.closed(s.serveConn(c, conns))
			conns.remove(c)
			nc.Close()
		})
	}
}

// serveConn answers queries on one TCP connection in order until the
// client closes it, goes idle, stalls inside a message, or sends a
// malformed length, and returns why it ended. Pipelined queries are read
// as they come; replies keep their order.
func (s *Server) serveConn(c *tcpConn, conns *tcpConns) (closed string) {
	var scratch answer.Scratch
	var lenBuf [2]byte
	buf := make([]byte, 0, 512)
	for {
		c.arm(time.Now(), conns.idleTimeout(), true)
		n, err := c.Read(lenBuf[:])
		if err != nil {
			return closeReason(err, "idle")
		}
		// A message has begun: the rest of it must follow promptly.
		c.arm(time.Now(), min(conns.limits.message, conns.idleTimeout()), false)
		if n < len(lenBuf) {
			if _, err := io.ReadFull(c, lenBuf[n:]); err != nil {
				return closeReason(err, "unfinished_message")
			}
		}
		size := int(binary.BigEndian.Uint16(lenBuf[:]))
		if size < wire.HeaderLen {
			return "malformed"
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(c, buf); err != nil {
			return closeReason(err, "unfinished_message")
		}
		out, result := s.respond(buf, c.from, true, &scratch)
		if result == answer.Forward {
			out = s.forwarded(buf, true)
		}
		if out == nil {
			continue
		}
		var prefix [2]byte
		binary.BigEndian.PutUint16(prefix[:], uint16(len(out)))
		c.SetWriteDeadline(time.Now().Add(conns.limits.idle))
		if _, err := (&net.Buffers{prefix[:], out}).WriteTo(c.Conn); err != nil {
			return "error"
		}
	}
}

// closeReason names why a read ended: timeout when the deadline passed,
// client when the peer closed, error otherwise.
func closeReason(err error, timeout string) string {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return timeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "client"
	default:
		return "error"
	}
}
