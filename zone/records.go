package zone

import (
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// RRBuf holds the records and nodes a Snapshot makes for one answer: a
// Choice's records (AppendRRs, AppendGlue) and the node of an endpoint's
// own name or of a reverse name (LookupInto). What it makes stays valid
// until Reset; the records' addresses point into the Snapshot, which never
// changes. A goroutine that answers queries keeps one and resets it for
// each; it must not be shared.
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
}

// Reset makes the buffer's space reusable: everything it made before may
// be overwritten. It clears what it made, so that no record left in the
// buffer keeps a replaced snapshot alive.
func (b *RRBuf) Reset() {
	b.a, b.aaaa, b.srv, b.ptr, b.rrs = cleared(b.a), cleared(b.aaaa), cleared(b.srv), cleared(b.ptr), cleared(b.rrs)
	b.node = Node{}
}

// cleared zeroes s and returns it with length 0. Elements past its length
// are zero already when every reset goes through it.
func cleared[T any](s []T) []T {
	clear(s)
	return s[:0]
}

func (b *RRBuf) newA(owner string, ttl uint32, ip *[4]byte) *dns.A {
	b.a = append(b.a, dns.A{Hdr: hdrTTL(owner, dns.TypeA, ttl), A: ip[:]})
	return &b.a[len(b.a)-1]
}

func (b *RRBuf) newAAAA(owner string, ttl uint32, ip *[16]byte) *dns.AAAA {
	b.aaaa = append(b.aaaa, dns.AAAA{Hdr: hdrTTL(owner, dns.TypeAAAA, ttl), AAAA: ip[:]})
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
			dst = append(dst, buf.newA(c.Owner, set.TTL, &m.v4))
		}
	case dns.TypeAAAA:
		if m.flags&has6 != 0 {
			dst = append(dst, buf.newAAAA(c.Owner, set.TTL, &m.v6))
		}
	case dns.TypeSRV:
		for _, p := range set.ports(m) {
			if c.Port != nil && (p.Name != c.Port.Name || p.Protocol != c.Port.Protocol) {
				continue
			}
			buf.srv = append(buf.srv, dns.SRV{Hdr: hdrTTL(c.Owner, dns.TypeSRV, set.TTL), Weight: set.srvWeight, Port: p.Port, Target: m.name})
			dst = append(dst, &buf.srv[len(buf.srv)-1])
		}
	}
	return dst
}

// Addr returns the address of candidate i of an A or AAAA choice, as the
// record's 4 or 16 bytes of data; nil when it has none of c's family. The
// bytes are the snapshot's and must not be modified.
func (c *Choice) Addr(i int) []byte {
	m := &c.Set.members[i]
	switch {
	case c.Qtype == dns.TypeA && m.flags&has4 != 0:
		return m.v4[:]
	case c.Qtype == dns.TypeAAAA && m.flags&has6 != 0:
		return m.v6[:]
	}
	return nil
}

// AppendGlue appends the address records of candidate i's own name, the
// additional section of an SRV answer.
func (c *Choice) AppendGlue(dst []dns.RR, i int, buf *RRBuf) []dns.RR {
	return c.Set.appendOwn(dst, i, buf)
}

// appendOwn appends the address records of candidate i under its own name.
func (s *EndpointSet) appendOwn(dst []dns.RR, i int, buf *RRBuf) []dns.RR {
	m := &s.members[i]
	if m.flags&named == 0 {
		return dst
	}
	if m.flags&has4 != 0 {
		dst = append(dst, buf.newA(m.name, s.TTL, &m.v4))
	}
	if m.flags&has6 != 0 {
		dst = append(dst, buf.newAAAA(m.name, s.TTL, &m.v6))
	}
	return dst
}

// ownName makes the node of candidate i's own name in buf.
func (b *RRBuf) ownName(apex *Apex, set *EndpointSet, i int) *Node {
	b.rrs = set.appendOwn(cleared(b.rrs), i, b)
	b.node = Node{Apex: apex}
	for k, rr := range b.rrs {
		if rr.Header().Rrtype == dns.TypeA {
			b.node.A = b.rrs[k : k+1 : k+1]
		} else {
			b.node.AAAA = b.rrs[k : k+1 : k+1]
		}
	}
	return &b.node
}

// endpointSet returns the EndpointSet of a headless Service's node, or nil.
func (n *Node) endpointSet() *EndpointSet {
	switch {
	case n.A4 != nil:
		return n.A4.Set
	case n.A6 != nil:
		return n.A6.Set
	}
	return nil
}

// host finds the candidate whose own name's first label is label.
func (s *EndpointSet) host(label string) (int, bool) {
	k, ok := slices.BinarySearchFunc(s.hosts, label, func(i int32, label string) int {
		return strings.Compare(s.Hostname(int(i)), label)
	})
	if !ok {
		return 0, false
	}
	return int(s.hosts[k]), true
}

// Hostname is the first label of candidate i's own name (whether or not
// that name fits and exists).
func (s *EndpointSet) Hostname(i int) string {
	m := &s.members[i]
	if m.flags&named == 0 {
		return m.name
	}
	return m.name[:len(m.name)-len(s.owner)-1]
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
