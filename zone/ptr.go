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
// set; when idx is fixedTarget, set's owner name (a ClusterIP Service's
// name); when idx is dashedTarget, the own name that the record's
// address spells, dashed, under set's owner (that of a member named
// after its address). For these two, set is only the holder of the
// Service's names, which every build of the Service shares
// (builder.ptrNames): such records are equal from one build to the next,
// and a change leaves them in the index (diffPTRs).
type ptrTarget struct {
	set *EndpointSet
	idx uint32
}

const (
	fixedTarget  = math.MaxUint32
	dashedTarget = math.MaxUint32 - 1
)

// compare orders the targets of one address: by Service, then by
// candidate. The order is the answer's, and the same whichever snapshot
// the targets were built in.
func (t ptrTarget) compare(u ptrTarget) int {
	if t.set != u.set {
		if c := cmp.Or(strings.Compare(t.set.Namespace, u.set.Namespace), strings.Compare(t.set.Service, u.set.Service)); c != 0 {
			return c
		}
	}
	return cmp.Compare(t.idx, u.idx)
}

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

func (r ptr4) cmpAddr(o ptr4) int { return cmp.Compare(r.addr, o.addr) }
func (r ptr6) cmpAddr(o ptr6) int { return cmp.Or(cmp.Compare(r.hi, o.hi), cmp.Compare(r.lo, o.lo)) }

type ptrRecord[R any] interface {
	ptr4 | ptr6
	ip() netip.Addr
	target() ptrTarget
	// cmpAddr compares the records' addresses only.
	cmpAddr(R) int
}

// comparePTR is the order of the index: by address, then target.
func comparePTR[R ptrRecord[R]](a, b R) int {
	return cmp.Or(a.cmpAddr(b), a.target().compare(b.target()))
}

func ptr4Of(a netip.Addr, to ptrTarget) ptr4 {
	b := a.As4()
	return ptr4{addr: binary.BigEndian.Uint32(b[:]), to: to}
}

func ptr6Of(a netip.Addr, to ptrTarget) ptr6 {
	b := a.As16()
	return ptr6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), to: to}
}

// ptrIndex holds a Snapshot's PTR records sorted by address, then by
// target (ptrTarget.compare), one sequence per family. Every endpoint
// adds one, so an IPv4 record is 16 bytes where a Node, a map entry, the
// reverse name and a dns.PTR took ≈ 250; the reverse name is parsed and
// the target's name spelled when asked (lookup). The sequences are
// persistent (ptrSeq): a snapshot built from another shares the parts of
// its index that its edits do not touch.
type ptrIndex struct {
	v4  ptrSeq[ptr4]
	v6  ptrSeq[ptr6]
	ttl uint32
}

// ptrRecords are one Service's PTR records, sorted as the index is.
type ptrRecords struct {
	v4 []ptr4
	v6 []ptr6
}

// add records a PTR from addr's reverse name to to.
func (x *ptrRecords) add(addr netip.Addr, to ptrTarget) {
	if addr.Is4() {
		x.v4 = append(x.v4, ptr4Of(addr, to))
	} else {
		x.v6 = append(x.v6, ptr6Of(addr, to))
	}
}

// seal sorts the records and drops repeated ones, once the last is added.
func (x *ptrRecords) seal() {
	x.v4, x.v6 = sealed(x.v4), sealed(x.v6)
}

// sealed sorts recs as the index does, unless they already are, and
// drops repeated ones, in place.
func sealed[R ptrRecord[R]](recs []R) []R {
	if len(recs) == 0 {
		return nil
	}
	if !slices.IsSortedFunc(recs, comparePTR[R]) {
		slices.SortFunc(recs, comparePTR[R])
	}
	return slices.Clip(slices.Compact(recs))
}

// sealedCopy returns recs sealed in an array of their size; recs, which
// it sorts, may be scratch space.
func sealedCopy[R ptrRecord[R]](recs []R) []R {
	return slices.Clone(sealed(recs))
}

// name returns the name that the record of addr to points to, made in
// buf when it is an own name.
func (to ptrTarget) name(addr netip.Addr, buf *RRBuf) string {
	switch to.idx {
	case fixedTarget:
		return to.set.owner
	case dashedTarget:
		return buf.dashedName(addr, to.set.owner)
	}
	return buf.ownName(to.set, &to.set.members[to.idx])
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
		return ptrNode(x, &x.v4, ptr4Of(p.Addr(), ptrTarget{}), p, name, apex, buf)
	}
	return ptrNode(x, &x.v6, ptr6Of(p.Addr(), ptrTarget{}), p, name, apex, buf)
}

// ptrNode is lookup's result for p, whose first address is k's.
func ptrNode[R ptrRecord[R]](x *ptrIndex, seq *ptrSeq[R], k R, p netip.Prefix, name string, apex *Apex, buf *RRBuf) *Node {
	it := seq.from(k)
	r, ok := it.next()
	if !ok || !p.Contains(r.ip()) {
		return nil
	}
	if !p.IsSingleIP() {
		return apex.empty
	}
	buf.rrs = cleared(buf.rrs)
	for ; ok && r.cmpAddr(k) == 0; r, ok = it.next() {
		buf.ptr = append(buf.ptr, dns.PTR{Hdr: hdrTTL(name, dns.TypePTR, x.ttl), Ptr: r.target().name(r.ip(), buf)})
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
func (x *ptrIndex) owners() int { return x.v4.owners() + x.v6.owners() }
