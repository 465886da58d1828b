// Package udpio moves a DNS server's UDP datagrams: batched recvmmsg and
// sendmmsg on Linux (amd64, arm64), one datagram at a time elsewhere. It
// knows nothing of DNS beyond the Answer and Shrink it is given, so that
// the benchmark's I/O floor (test/bench/udpfloor) serves through the very
// loop hdns serves through, with a fixed reply in place of the answer path.
package udpio

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Conn is a UDP socket served by one or more Serve loops. Its fields are
// set before the first Serve and not changed after.
type Conn struct {
	// UDP is the socket.
	UDP *net.UDPConn
	// PacketInfo sends each reply from the address its query came to. Set
	// it when UDP is bound to a wildcard address and delivers packet-info
	// control messages (IP_PKTINFO, IPV6_RECVPKTINFO).
	PacketInfo bool
	// Shrink cuts a reply the kernel refused as over the interface MTU
	// (EMSGSIZE), which is then sent again; ok false, or a nil Shrink,
	// drops it.
	Shrink func(out []byte) (_ []byte, ok bool)
	// LogError reports a failed read or write; nil reports nowhere.
	LogError func(op string, err error)
}

// Answer returns the reply to the datagram pkt from from, or nil for none.
// src is the control message that sends a reply from the address pkt came
// to (nil unless PacketInfo). pkt and src are valid only during the call;
// the reply is read before the loop that called Answer calls it again.
type Answer func(pkt []byte, from netip.AddrPort, src []byte) []byte

func (c *Conn) logError(op string, err error) {
	if c.LogError != nil {
		c.LogError(op, err)
	}
}

// ServeOneByOne is Serve without batching: one read and one write per
// datagram. Serve falls back to it where batching fails.
func (c *Conn) ServeOneByOne(answer Answer) {
	buf := make([]byte, 65535) // the largest UDP payload
	var oob []byte
	if c.PacketInfo {
		// A dual-stack socket may deliver both kinds for one packet.
		oob = make([]byte, len(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface))+len(ipv6.NewControlMessage(ipv6.FlagDst|ipv6.FlagInterface)))
	}
	for {
		n, oobn, _, from, err := c.UDP.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.logError("udp read", err)
			continue
		}
		src := replySource(oob[:oobn])
		if out := answer(buf[:n], from, src); out != nil {
			c.Write(out, src, from)
		}
	}
}

// Write sends one reply to to from src (see Answer), as Serve sends them:
// one the kernel refuses as over the MTU goes again as Shrink cuts it.
// It is safe to call from any goroutine.
func (c *Conn) Write(out, src []byte, to netip.AddrPort) {
	_, _, err := c.UDP.WriteMsgUDPAddrPort(out, src, to)
	if errors.Is(err, syscall.EMSGSIZE) && c.Shrink != nil {
		if short, ok := c.Shrink(out); ok {
			_, _, err = c.UDP.WriteMsgUDPAddrPort(short, src, to)
		}
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		c.logError("udp write", err)
	}
}

// replySource turns the control message of a received packet into one that
// sends the reply from the address the query came to; nil when there is
// none.
func replySource(oob []byte) []byte {
	if len(oob) == 0 {
		return nil
	}
	// IPv4 sources go in an IPv4 control message, also on a dual-stack
	// socket.
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil && cm6.Dst.To4() == nil {
		return (&ipv6.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	var cm4 ipv4.ControlMessage
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		return (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal()
	}
	return nil
}
