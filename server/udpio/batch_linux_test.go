//go:build linux && (amd64 || arm64)

package udpio

import (
	"bytes"
	"net/netip"
	"syscall"
	"testing"
)

// TestAppendReplySourceMatchesReplySource compares the batched loop's
// control-message builder with replySource on what the kernel delivers.
func TestAppendReplySourceMatchesReplySource(t *testing.T) {
	v4 := func(dst string) []byte {
		b := appendCmsg(nil, syscall.IPPROTO_IP, syscall.IP_PKTINFO, syscall.SizeofInet4Pktinfo)
		d := b[syscall.SizeofCmsghdr:]
		d[0] = 2                          // ifindex
		copy(d[4:], []byte{127, 0, 0, 9}) // spec_dst
		a := netip.MustParseAddr(dst).As4()
		copy(d[8:], a[:]) // addr
		return b
	}
	v6 := func(dst string) []byte {
		b := appendCmsg(nil, syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, syscall.SizeofInet6Pktinfo)
		a := netip.MustParseAddr(dst).As16()
		copy(b[syscall.SizeofCmsghdr:], a[:])
		b[syscall.SizeofCmsghdr+16] = 3 // ifindex
		return b
	}
	for _, oob := range [][]byte{
		nil,
		v4("10.0.0.5"),
		v6("fd00::5"),
		v6("::ffff:10.0.0.6"),
		append(v4("10.0.0.7"), v6("::ffff:10.0.0.7")...),
		append(v6("::ffff:10.0.0.8"), v4("10.0.0.8")...),
		append(v6("fe80::1"), v4("10.0.0.9")...),
		{1, 2, 3},
	} {
		want := replySource(oob)
		got := appendReplySource(nil, oob)
		if !bytes.Equal(got, want) {
			t.Errorf("oob %x:\n got %x\nwant %x", oob, got, want)
		}
	}
}
