package zone

import (
	"cmp"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ptr4 and ptr6 are the PTR records of a Snapshot: from the reverse name
// of the address to a target. Addresses are held as integers, so that
// lookups compare them as such.
type (
	ptr4 struct {
		addr uint32
		to   ptrTarget
	}
	ptr6 struct {
		hi, lo uint64
		to     ptrTarget
	}
)

// ptrTarget is where a PTR record points: the own name of member idx of
// the index's set number set, or, when set is fixedTarget, the index's
// fixed name number idx (a ClusterIP Service's name).
type ptrTarget struct{ set, idx uint32 }

const fixedTarget = math.MaxUint32

func (r ptr4) ip() netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], r.addr)
	return netip.AddrFrom4(b)
}

func (r ptr6) ip() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], r.hi)
	binary.BigEndian.PutUint64(b[8:], r.lo)
	return netip.AddrFrom16(b)
}

func (r ptr4) target() ptrTarget { return r.to }
func (r ptr6) target() ptrTarget { return r.to }

type ptrRecord interface {
	ptr4 | ptr6
	ip() netip.Addr
	target() ptrTarget
}

func ptr4Of(a netip.Addr, to ptrTarget) ptr4 {
	b := a.As4()
	return ptr4{addr: binary.BigEndian.Uint32(b[:]), to: to}
}

func ptr6Of(a netip.Addr, to ptrTarget) ptr6 {
	b := a.As16()
	return ptr6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), to: to}
}

// ptrIndex holds a Snapshot's PTR records sorted by address, one list per
// family; an address's records keep the order they were added in. Every
// endpoint adds one, so an IPv4 record is 12 bytes where a Node, a map
// entry, the reverse name and a dns.PTR took ≈ 250; the reverse name is
// parsed and the target's name spelled when asked (lookup).
type ptrIndex struct {
	v4  []ptr4
	v6  []ptr6
	ttl uint32
	// sets are the EndpointSets whose members records point to; fixed
	// the other targets.
	sets  []*EndpointSet
	fixed []string
}

// add records a PTR from addr's reverse name to to.
func (x *ptrIndex) add(addr netip.Addr, to ptrTarget) {
	if addr.Is4() {
		x.v4 = append(x.v4, ptr4Of(addr, to))
	} else {
		x.v6 = append(x.v6, ptr6Of(addr, to))
	}
}

// name returns the name to points to, made in buf when it is a member's.
func (x *ptrIndex) name(to ptrTarget, buf *RRBuf) string {
	if to.set == fixedTarget {
		return x.fixed[to.idx]
	}
	set := x.sets[to.set]
	return buf.ownName(set, &set.members[to.idx])
}

// seal sorts the records and drops repeated ones. Build calls it once,
// after the last add.
func (x *ptrIndex) seal() {
	x.v4, x.v6 = sealed(x.v4), sealed(x.v6)
	x.sets, x.fixed = slices.Clip(x.sets), slices.Clip(x.fixed)
}

// sealed sorts recs by address and drops those with the target of an
// earlier one of their address. Each target has one ptrTarget (a member,
// or a Service's fixed name), so comparing those compares the names.
func sealed[R ptrRecord](recs []R) []R {
	slices.SortStableFunc(recs, func(a, b R) int { return a.ip().Compare(b.ip()) })
	out := recs[:0]
	for _, r := range recs {
		dup := false
		for j := len(out) - 1; j >= 0 && out[j].ip() == r.ip(); j-- {
			if out[j].target() == r.target() {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r)
		}
	}
	// A copy, so that the snapshot does not keep append's spare room.
	return slices.Clone(out)
}

// lookup finds the lower-case reverse name in the index, inside apex (a
// reverse zone, the name strictly below it): a Node made in buf with the
// PTR records of a full address, apex's empty non-terminal node for a prefix
// that some record's address starts with, nil otherwise.
func (x *ptrIndex) lookup(name string, apex *Apex, buf *RRBuf) *Node {
	p, ok := parseReverse(name)
	if !ok {
		return nil
	}
	if p.Addr().Is4() {
		k := ptr4Of(p.Addr(), ptrTarget{})
		first, _ := slices.BinarySearchFunc(x.v4, k, func(r, k ptr4) int { return cmp.Compare(r.addr, k.addr) })
		return ptrNode(x, x.v4[first:], p, name, apex, buf)
	}
	k := ptr6Of(p.Addr(), ptrTarget{})
	first, _ := slices.BinarySearchFunc(x.v6, k, func(r, k ptr6) int {
		return cmp.Or(cmp.Compare(r.hi, k.hi), cmp.Compare(r.lo, k.lo))
	})
	return ptrNode(x, x.v6[first:], p, name, apex, buf)
}

// ptrNode is lookup's result for p given the records from the first whose
// address is p's or after it.
func ptrNode[R ptrRecord](x *ptrIndex, recs []R, p netip.Prefix, name string, apex *Apex, buf *RRBuf) *Node {
	if len(recs) == 0 || !p.Contains(recs[0].ip()) {
		return nil
	}
	if !p.IsSingleIP() {
		return apex.empty
	}
	buf.rrs = cleared(buf.rrs)
	for _, r := range recs {
		if r.ip() != p.Addr() {
			break
		}
		buf.ptr = append(buf.ptr, dns.PTR{Hdr: hdrTTL(name, dns.TypePTR, x.ttl), Ptr: x.name(r.target(), buf)})
		buf.rrs = append(buf.rrs, &buf.ptr[len(buf.ptr)-1])
	}
	buf.node = Node{Apex: apex, PTR: buf.rrs}
	return &buf.node
}

// parseReverse reads a lower-case reverse name as the prefix it stands
// for: "2.1.10.in-addr.arpa." is 10.1.2.0/24, "in-addr.arpa." 0.0.0.0/0,
// each ip6.arpa. label a nibble. Only the names dns.ReverseAddr writes
// and their ancestors parse: decimal octets without leading zeros, one
// hex digit per nibble, no more labels than the address has.
func parseReverse(name string) (netip.Prefix, bool) {
	if rest, ok := strings.CutSuffix(name, "in-addr.arpa."); ok {
		var a [4]byte
		labels := splitReverse(rest)
		if labels < 0 || labels > 4 {
			return netip.Prefix{}, false
		}
		for i := labels - 1; i >= 0; i-- {
			label, r, _ := strings.Cut(rest, ".")
			rest = r
			v, ok := octet(label)
			if !ok {
				return netip.Prefix{}, false
			}
			a[i] = v
		}
		return netip.PrefixFrom(netip.AddrFrom4(a), 8*labels), true
	}
	if rest, ok := strings.CutSuffix(name, "ip6.arpa."); ok {
		var a [16]byte
		labels := splitReverse(rest)
		if labels < 0 || labels > 32 {
			return netip.Prefix{}, false
		}
		for i := labels - 1; i >= 0; i-- {
			if len(rest) < 2 || rest[1] != '.' {
				return netip.Prefix{}, false
			}
			v, ok := nibble(rest[0])
			if !ok {
				return netip.Prefix{}, false
			}
			a[i/2] |= v << (4 * (1 - i%2))
			rest = rest[2:]
		}
		return netip.PrefixFrom(netip.AddrFrom16(a), 4*labels), true
	}
	return netip.Prefix{}, false
}

// splitReverse counts the labels of the part of a reverse name before its
// "in-addr.arpa." or "ip6.arpa." suffix ("" or ending in a dot); -1 when
// it is not whole labels.
func splitReverse(s string) int {
	if s == "" {
		return 0
	}
	if s[len(s)-1] != '.' || strings.Contains(s, "..") || s[0] == '.' {
		return -1
	}
	return strings.Count(s, ".")
}

func octet(s string) (byte, bool) {
	if len(s) == 0 || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// owners counts the distinct addresses with records: the reverse names
// the index answers for.
func (x *ptrIndex) owners() int { return owners(x.v4) + owners(x.v6) }

func owners[R ptrRecord](recs []R) int {
	n := 0
	for i, r := range recs {
		if i == 0 || recs[i-1].ip() != r.ip() {
			n++
		}
	}
	return n
}
