package zone

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// ptrRecord is one PTR record of a Snapshot: from the reverse name of
// addr to target.
type ptrRecord struct {
	addr   netip.Addr
	target string // shared with the target's own records
}

// ptrIndex holds a Snapshot's PTR records sorted by address; an address's
// records keep the order they were added in. Every endpoint adds one, so
// the index keeps 40 bytes per record where a Node, a map entry, the
// reverse name and a dns.PTR took ≈ 250; the reverse name is parsed when
// asked (lookup) and the record made then.
type ptrIndex struct {
	recs []ptrRecord
	ttl  uint32
}

// add records a PTR from addr's reverse name to target, once.
func (x *ptrIndex) add(addr netip.Addr, target string) {
	x.recs = append(x.recs, ptrRecord{addr: addr, target: target})
}

// seal sorts the records and drops repeated ones. Build calls it once,
// after the last add.
func (x *ptrIndex) seal() {
	slices.SortStableFunc(x.recs, func(a, b ptrRecord) int { return a.addr.Compare(b.addr) })
	out := x.recs[:0]
	for _, r := range x.recs {
		dup := false
		for j := len(out) - 1; j >= 0 && out[j].addr == r.addr; j-- {
			if out[j].target == r.target {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r)
		}
	}
	// A copy, so that the snapshot does not keep append's spare room.
	x.recs = slices.Clone(out)
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
	first, _ := slices.BinarySearchFunc(x.recs, p.Addr(), func(r ptrRecord, a netip.Addr) int { return r.addr.Compare(a) })
	if first == len(x.recs) || !p.Contains(x.recs[first].addr) {
		return nil
	}
	if !p.IsSingleIP() {
		return apex.empty
	}
	buf.rrs = buf.rrs[:0]
	for _, r := range x.recs[first:] {
		if r.addr != p.Addr() {
			break
		}
		buf.ptr = append(buf.ptr, dns.PTR{Hdr: hdrTTL(name, dns.TypePTR, x.ttl), Ptr: r.target})
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
func (x *ptrIndex) owners() int {
	n := 0
	for i, r := range x.recs {
		if i == 0 || x.recs[i-1].addr != r.addr {
			n++
		}
	}
	return n
}
