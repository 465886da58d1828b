package topology

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"

	"github.com/hdns-dev/hdns/zone"
)

// claim is one object's say on where an address is: a Node listing it,
// or endpoints naming their node. n counts the objects that say the same
// (one pod in several slices, one address listed twice).
type claim struct {
	node string
	zone string // an endpoint's zone field; "" for a Node's address
	by   Method
	n    int32
}

// before orders claims: the better rank, then the node name, then the
// zone, so that the winner does not depend on arrival order.
func (c *claim) before(d *claim) bool {
	switch {
	case c.by != d.by:
		return c.by < d.by
	case c.node != d.node:
		return c.node < d.node
	}
	return c.zone < d.zone
}

// applyNode records a Node's upsert or delete and reports whether it
// changed what the Locator knows. The caller holds mu.
func (l *Locator) applyNode(c zone.Change) bool {
	old := l.nodes[c.Node.Name]
	switch {
	case old == nil && c.Op == zone.OpDelete:
		return false
	case old != nil && c.Op == zone.OpUpsert && zone.NodesEquivalent(old, c.Node):
		return false
	}
	// The new claims come before the old go, so that an address claimed
	// by both keeps its winner and is not rewritten.
	if c.Op == zone.OpUpsert {
		l.nodes[c.Node.Name] = c.Node
		for _, a := range c.Node.Addresses {
			l.claim(a, claim{node: c.Node.Name, by: ByNodeAddress}, +1)
		}
	} else {
		delete(l.nodes, old.Name)
	}
	if old != nil {
		for _, a := range old.Addresses {
			l.claim(a, claim{node: old.Name, by: ByNodeAddress}, -1)
		}
	}
	return true
}

// applySlice records a slice's upsert or delete: the claims of the new
// version come, then those of the version held go, so that an address
// both claim keeps its winner and is not rewritten. The caller holds mu.
func (l *Locator) applySlice(c zone.Change) {
	k := c.Key()
	old := l.slices[k]
	if c.Op == zone.OpUpsert && old == c.Slice {
		return
	}
	if c.Op == zone.OpUpsert {
		l.slices[k] = c.Slice
		if old != nil {
			l.reclaim(old, c.Slice)
			return
		}
		l.slicesClaims(c.Slice, +1)
		return
	}
	delete(l.slices, k)
	if old != nil {
		l.slicesClaims(old, -1)
	}
}

// reclaim moves the claims of slice old to its update s. An endpoint
// that claims the same address, node and zone at the same index in both
// (a change of conditions only, the common update) keeps its claim
// untouched; the others' claims are added for s before old's are taken
// back, so that an address claimed by both never passes through no
// claim.
func (l *Locator) reclaim(old, s *zone.EndpointSlice) {
	same := func(i int) bool {
		return i < len(old.Endpoints) && i < len(s.Endpoints) &&
			endpointClaimsEqual(&old.Endpoints[i], &s.Endpoints[i])
	}
	for i := range s.Endpoints {
		if !same(i) {
			l.endpointClaim(&s.Endpoints[i], +1)
		}
	}
	for i := range old.Endpoints {
		if !same(i) {
			l.endpointClaim(&old.Endpoints[i], -1)
		}
	}
}

// endpointClaimsEqual reports whether a and b claim alike: the same
// address for the same node and zone, or neither claims.
func endpointClaimsEqual(a, b *zone.Endpoint) bool {
	ta, tb := a.Topology, b.Topology
	claimsA := ta != nil && ta.NodeName != ""
	claimsB := tb != nil && tb.NodeName != ""
	if !claimsA || !claimsB {
		return claimsA == claimsB
	}
	return ta.NodeName == tb.NodeName && ta.Zone == tb.Zone && a.Address() == b.Address()
}

// slicesClaims adds (delta +1) or takes back (-1) the claims of s's
// endpoints that name their node.
func (l *Locator) slicesClaims(s *zone.EndpointSlice, delta int32) {
	for i := range s.Endpoints {
		l.endpointClaim(&s.Endpoints[i], delta)
	}
}

// endpointClaim adds (delta +1) or takes back (-1) e's claim, when e
// names its node.
func (l *Locator) endpointClaim(e *zone.Endpoint, delta int32) {
	if e.Topology == nil || e.Topology.NodeName == "" {
		return
	}
	l.claim(e.Address(), claim{node: e.Topology.NodeName, zone: e.Topology.Zone, by: ByEndpoint}, delta)
}

// claim counts c on a, by delta, and writes a's new winner to the trie
// when it changed.
func (l *Locator) claim(a netip.Addr, c claim, delta int32) {
	a = a.Unmap()
	if !a.IsValid() {
		return
	}
	k := addrKey(a.As16())
	cs := l.claims[k]
	before := winner(cs)
	found := false
	for i := range cs {
		if cs[i].node == c.node && cs[i].zone == c.zone && cs[i].by == c.by {
			cs[i].n += delta
			found = true
			if cs[i].n <= 0 {
				cs[i] = cs[len(cs)-1]
				cs = cs[:len(cs)-1]
			}
			break
		}
	}
	if !found && delta > 0 {
		c.n = delta
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		delete(l.claims, k)
	} else {
		l.claims[k] = cs
	}
	after := winner(cs)
	if after != before {
		l.exact.put(&k, after, after.by != Unknown)
		l.countStray(a, before, -1)
		l.countStray(a, after, +1)
	}
}

// winner returns the hit the claims give; the zero hit for none.
func winner(cs []claim) hit {
	if len(cs) == 0 {
		return hit{}
	}
	best := &cs[0]
	for i := 1; i < len(cs); i++ {
		if cs[i].before(best) {
			best = &cs[i]
		}
	}
	return hit{node: best.node, zone: best.zone, by: best.by}
}

func newSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
