//go:build linux

package udpio

import (
	"net"
	"syscall"
)

// DontFragment makes the kernel send IPv4 datagrams from c with DF set
// and never fragment them, as RFC 9715 (IP fragmentation avoidance in DNS
// over UDP) recommends of responders: IP_PMTUDISC_PROBE sets DF and sizes
// by the interface MTU, not by path MTU news that an off-path attacker
// can forge. A reply over the interface MTU then fails with EMSGSIZE, and
// Serve and Write send what Conn.Shrink makes of it instead.
//
// It also saves the kernel's hashed IP ID per reply: with the default
// IP_PMTUDISC_WANT a datagram may still be fragmented locally, so each
// one needs a unique ID (__ip_select_ident, 2.7% of the server's CPU per
// query under dnsperf); with DF set and no fragmenting the ID is 0.
//
// On an IPv6 socket the option covers IPv4-mapped peers. IPv6 needs
// nothing from a DNS server whose UDP replies are at most 1232 bytes, as
// hdns's are: with their headers they fit the IPv6 minimum MTU of 1280,
// so they are never fragmented. An error (a v6-only socket) leaves the
// default.
func DontFragment(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_PROBE)
	})
}
