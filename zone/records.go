package zone

import (
	"bytes"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/miekg/dns"
)

// RRBuf holds the records and nodes a Snapshot makes for one answer: a
// Choice's records (AppendRRs, AppendGlue) and the node of an endpoint's
// own name or of a reverse name (LookupInto), with the names they hold.
// The records' addresses point into the snapshot's endpoints, which never
// change. What it makes stays valid until Reset, which reuses its space: a
// caller must be done with every record and string it made (pack the
// answer, format the records) before the next Reset. A goroutine that
// answers queries keeps one and resets it for each; it must not be shared.
//
// Records are kept in slices that grow to the largest answer and are then
// reused, so that answering allocates nothing in steady state. When a
// slice grows, records already handed out stay in the old array, which
// their answer keeps alive.
type RRBuf struct {
	a    []dns.A
	aaaa []dns.AAAA
	srv  []dns.SRV
	ptr  []dns.PTR
	node Node
	rrs  []dns.RR // the node's records
	// data holds the bytes of the names made since Reset.
	// It only grows by appending: when full, a new array takes over and
	// what was cut from the old one stays there.
	data []byte
}

// Reset makes the buffer's space reusable: everything it made before may
// be overwritten. It clears what it made, so that no record left in the
// buffer keeps a replaced snapshot alive.
func (b *RRBuf) Reset() {
	b.a, b.aaaa, b.srv, b.ptr, b.rrs = cleared(b.a), cleared(b.aaaa), cleared(b.srv), cleared(b.ptr), cleared(b.rrs)
	b.node = Node{}
	b.data = b.data[:0]
}

// cleared zeroes s and returns it with length 0. Elements past its length
// are zero already when every reset goes through it.
func cleared[T any](s []T) []T {
	clear(s)
	return s[:0]
}

// room makes sure n more bytes can be appended to b.data in place.
func (b *RRBuf) room(n int) {
	if cap(b.data)-len(b.data) < n {
		b.data = make([]byte, 0, max(2*cap(b.data), n, 512))
	}
}

// ownName returns m's own name (set.appendOwnName), held in b.
func (b *RRBuf) ownName(set *EndpointSet, m *member) string {
	b.room(maxLabel + 1 + len(set.owner))
	start := len(b.data)
	b.data = set.appendOwnName(b.data, m)
	return b.held(start)
}

// dashedName returns the own name that ip spells, dashed, under owner,
// held in b.
func (b *RRBuf) dashedName(ip netip.Addr, owner string) string {
	b.room(maxLabel + 1 + len(owner))
	start := len(b.data)
	b.data = append(append(appendDashed(b.data, ip), '.'), owner...)
	return b.held(start)
}

// held returns the bytes of b.data from start on as a string. They are
// never written again before Reset, whose contract ends the string's
// use.
func (b *RRBuf) held(start int) string {
	return unsafe.String(&b.data[start], len(b.data)-start)
}

func (b *RRBuf) newA(owner string, ttl uint32, ip []byte) *dns.A {
	b.a = append(b.a, dns.A{Hdr: hdrTTL(owner, dns.TypeA, ttl), A: ip})
	return &b.a[len(b.a)-1]
}

func (b *RRBuf) newAAAA(owner string, ttl uint32, ip []byte) *dns.AAAA {
	b.aaaa = append(b.aaaa, dns.AAAA{Hdr: hdrTTL(owner, dns.TypeAAAA, ttl), AAAA: ip})
	return &b.aaaa[len(b.aaaa)-1]
}

// AppendRRs appends the answer records of candidate i of c, under c.Owner:
// its address of c's family, or an SRV record for each of its ports that c
// answers (priority 0; a caller that answers in the policy's order sets
// the priorities of these copies).
func (c *Choice) AppendRRs(dst []dns.RR, i int, buf *RRBuf) []dns.RR {
	set := c.Set
	m := &set.members[i]
	switch c.Qtype {
	case dns.TypeA:
		if m.flags&has4 != 0 {
			dst = append(dst, buf.newA(c.Owner, set.TTL, m.ip(false)))
		}
	case dns.TypeAAAA:
		if m.flags&has6 != 0 {
			dst = append(dst, buf.newAAAA(c.Owner, set.TTL, m.ip(true)))
		}
	case dns.TypeSRV:
		target := ""
		for _, p := range set.ports(m) {
			if c.Port != nil && (p.Name != c.Port.Name || p.Protocol != c.Port.Protocol) {
				continue
			}
			if target == "" {
				target = buf.ownName(set, m)
			}
			buf.srv = append(buf.srv, dns.SRV{Hdr: hdrTTL(c.Owner, dns.TypeSRV, set.TTL), Weight: set.srvWeight, Port: p.Port, Target: target})
			dst = append(dst, &buf.srv[len(buf.srv)-1])
		}
	}
	return dst
}

// MayRepeat reports whether candidate i of an SRV choice may make records
// equal to others of the same answer, its own or another candidate's,
// which the answer must then send once (RFC 2181 5).
func (c *Choice) MayRepeat(i int) bool { return c.Set.members[i].flags&repeatsSRV != 0 }

// Addr returns the address of candidate i of an A or AAAA choice, as the
// record's 4 or 16 bytes of data; nil when it has none of c's family. The
// bytes are the snapshot's and must not be modified.
func (c *Choice) Addr(i int) []byte {
	m := &c.Set.members[i]
	switch {
	case c.Qtype == dns.TypeA && m.flags&has4 != 0:
		return m.ip(false)
	case c.Qtype == dns.TypeAAAA && m.flags&has6 != 0:
		return m.ip(true)
	}
	return nil
}

// AppendGlue appends the address records of candidate i's own name, the
// additional section of an SRV answer.
func (c *Choice) AppendGlue(dst []dns.RR, i int, buf *RRBuf) []dns.RR {
	m := &c.Set.members[i]
	if m.flags&named == 0 {
		return dst
	}
	return c.Set.appendOwn(dst, i, buf.ownName(c.Set, m), buf)
}

// appendOwn appends the address records of candidate i under its own
// name, owner.
func (s *EndpointSet) appendOwn(dst []dns.RR, i int, owner string, buf *RRBuf) []dns.RR {
	m := &s.members[i]
	if m.flags&has4 != 0 {
		dst = append(dst, buf.newA(owner, s.TTL, m.ip(false)))
	}
	if m.flags&has6 != 0 {
		dst = append(dst, buf.newAAAA(owner, s.TTL, m.ip(true)))
	}
	return dst
}

// ownNode makes the node of candidate i's own name, name, in buf.
func (b *RRBuf) ownNode(apex *Apex, set *EndpointSet, i int, name string) *Node {
	b.rrs = set.appendOwn(cleared(b.rrs), i, name, b)
	b.node = Node{Apex: apex}
	for k, rr := range b.rrs {
		if rr.Header().Rrtype == dns.TypeA {
			b.node.FixedA = b.rrs[k : k+1 : k+1]
		} else {
			b.node.FixedAAAA = b.rrs[k : k+1 : k+1]
		}
	}
	return &b.node
}

// endpointSet returns the EndpointSet of a headless Service's node, or nil.
func (n *Node) endpointSet() *EndpointSet {
	switch {
	case n.ChosenA != nil:
		return n.ChosenA.Set
	case n.ChosenAAAA != nil:
		return n.ChosenAAAA.Set
	}
	return nil
}

// host finds the candidate whose own name's first label is label, or
// whose dashed IPv6 address label spells in short form (fd00--1, as
// CoreDNS names endpoints, for fd00-0000-…-0001).
func (s *EndpointSet) host(label string) (int, bool) {
	// The label's bytes are only read.
	if i, ok := s.hostSpelled(unsafe.Slice(unsafe.StringData(label), len(label))); ok {
		return i, true
	}
	var full [maxLabel]byte
	if dashed, ok := fullDashed6(label, full[:0]); ok {
		return s.hostSpelled(dashed)
	}
	return 0, false
}

// hostSpelled finds the candidate whose own name's first label is label.
func (s *EndpointSet) hostSpelled(label []byte) (int, bool) {
	var spelled [maxLabel]byte
	at := func(k int) []byte { return s.members[s.hosts[k]].appendHostname(spelled[:0]) }
	lo, hi := 0, len(s.hosts)
	for lo < hi {
		if mid := int(uint(lo+hi) >> 1); bytes.Compare(at(mid), label) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(s.hosts) || !bytes.Equal(at(lo), label) {
		return 0, false
	}
	return int(s.hosts[lo]), true
}

// fullDashed6 appends to b the full dashed form of label when label is an
// IPv6 address dashed in another form: groups without leading zeros, a
// run of zero groups as "--"; false otherwise.
func fullDashed6(label string, b []byte) ([]byte, bool) {
	if len(label) >= 39 || len(label) < 2 {
		return nil, false
	}
	var groups [8]uint16
	n, gap := 0, -1
	i := 0
	if strings.HasPrefix(label, "--") {
		gap, i = 0, 2
	}
	for i < len(label) {
		j, v := i, uint16(0)
		for ; j < len(label) && j-i < 4 && isHexDigit(label[j]); j++ {
			v = v<<4 | uint16(hexValue(label[j]))
		}
		if j == i || n == 8 {
			return nil, false
		}
		groups[n], n = v, n+1
		switch {
		case j == len(label):
			i = j
		case label[j] != '-' || j+1 == len(label):
			return nil, false
		case label[j+1] == '-':
			if gap >= 0 {
				return nil, false
			}
			gap, i = n, j+2
		default:
			i = j + 1
		}
	}
	if gap < 0 && n != 8 || gap >= 0 && n == 8 {
		return nil, false
	}
	var a [16]byte
	for k := range n {
		at := k
		if gap >= 0 && k >= gap {
			at = 8 - n + k
		}
		a[2*at], a[2*at+1] = byte(groups[k]>>8), byte(groups[k])
	}
	ip := netip.AddrFrom16(a)
	if ip.Is4In6() {
		return nil, false
	}
	return appendDashed(b, ip), true
}

func isHexDigit(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func hexValue(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// Hostname is the first label of candidate i's own name (whether or not
// that name fits and exists).
func (s *EndpointSet) Hostname(i int) string {
	return string(s.members[i].appendHostname(nil))
}

// maxLabel is the longest label: a hostname, a Pod name used as one, or a
// dashed IPv6 address (39 octets).
const maxLabel = 63

// appendHostname appends the first label of m's own name: the endpoint's
// hostname, its Pod's name, or its dashed address, as the build chose.
func (m *member) appendHostname(b []byte) []byte {
	switch m.flags & hostFrom {
	case hostFromPod:
		return appendLower(b, m.src.PodName())
	case hostFrom4:
		return appendDashed(b, m.addr(false))
	case hostFrom6:
		return appendDashed(b, m.addr(true))
	}
	return append(b, m.src.Hostname()...)
}

// appendOwnName appends m's own name: hostname.owner, or the bare
// hostname when that would pass 255 octets.
func (s *EndpointSet) appendOwnName(b []byte, m *member) []byte {
	b = m.appendHostname(b)
	if m.flags&named == 0 {
		return b
	}
	return append(append(b, '.'), s.owner...)
}

// appendLower appends s in ASCII lower case.
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// appendDashed appends the label the spec gives an endpoint without a
// hostname: 10.0.0.1 → 10-0-0-1, fd00::1 → fd00-0000-…-0001.
func appendDashed(b []byte, ip netip.Addr) []byte {
	const hex = "0123456789abcdef"
	if ip.Is4() {
		start := len(b)
		b = ip.WithZone("").AppendTo(b)
		for k := start; k < len(b); k++ {
			if b[k] == '.' {
				b[k] = '-'
			}
		}
		return b
	}
	a := ip.As16()
	for k := 0; k < 16; k += 2 {
		if k > 0 {
			b = append(b, '-')
		}
		b = append(b, hex[a[k]>>4], hex[a[k]&0xf], hex[a[k+1]>>4], hex[a[k+1]&0xf])
	}
	return b
}

// Endpoint is the EndpointSlice endpoint candidate i was made from (of a
// dual-stack Pod, its first family's). It is shared with the source and
// must not be modified.
func (s *EndpointSet) Endpoint(i int) *Endpoint { return s.members[i].src }

// ports are the ports m has SRV records for.
func (s *EndpointSet) ports(m *member) []Port {
	if m.ports == 0 {
		return nil
	}
	return s.portSets[m.ports]
}
