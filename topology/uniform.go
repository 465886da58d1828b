package topology

import "net/netip"

// A podCIDR is uniform when every address in it is located alike (one
// node, zone and region): no address in it is claimed exactly for another
// place (a node address, or a pod the CNI placed outside its node's
// range), and no longer podCIDR of another place lies inside it. Only a
// uniform podCIDR is a client's Location.Bits, so that a cache told to
// share an answer across the prefix shares it only where hdns would
// answer alike.
//
// The Locator keeps, per podCIDR, the count of what keeps it from being
// uniform: changed exact claims adjust it as they change their winner;
// a change of Nodes (new podCIDRs, zone labels) counts all the addresses
// again, O(addresses), which Nodes' rare changes afford.

// countStray counts, by delta, the claim h on a against the podCIDR
// holding a, when h places a elsewhere than the podCIDR does. The caller
// holds mu.
func (l *Locator) countStray(a netip.Addr, h hit, delta int32) {
	if h.by == Unknown {
		return
	}
	name, ref, ok := l.cidrs.lookup(a)
	if !ok || samePlace(resolve(l.nodes, h.node, h.zone, h.by, 0), resolve(l.nodes, name, "", ByPodCIDR, 0)) {
		return
	}
	l.strayBy(ref, delta)
}

func (l *Locator) strayBy(ref cidrRef, delta int32) {
	n := l.strays[ref] + delta
	if (n > 0) != (l.strays[ref] > 0) {
		l.strayed = true
	}
	if n == 0 {
		delete(l.strays, ref)
	} else {
		l.strays[ref] = n
	}
}

// recountStrays counts the strays of the podCIDRs in l.cidrs afresh: every
// claimed address, and every podCIDR inside a shorter one of another
// place. The caller holds mu.
func (l *Locator) recountStrays() {
	clear(l.strays)
	l.strayed = true
	for k, cs := range l.claims {
		l.countStray(netip.AddrFrom16(k).Unmap(), winner(cs), +1)
	}
	for _, lens := range [][]prefixLen{l.cidrs.v4, l.cidrs.v6} {
		for i, inner := range lens {
			for k, name := range inner.nodes {
				l.countNested(lens[i+1:], netip.AddrFrom16(k).Unmap(), name)
			}
		}
	}
}

// countNested counts the podCIDR at a of node as a stray of each shorter
// podCIDR (in shorter, longest first) that holds it for another place.
func (l *Locator) countNested(shorter []prefixLen, a netip.Addr, node string) {
	for _, outer := range shorter {
		p, err := a.Prefix(outer.bits)
		if err != nil {
			continue
		}
		ref := cidrRef{key: addrKey(p.Addr().As16()), bits: outer.bits}
		if held, ok := outer.nodes[ref.key]; ok &&
			!samePlace(resolve(l.nodes, node, "", ByPodCIDR, 0), resolve(l.nodes, held, "", ByPodCIDR, 0)) {
			l.strayBy(ref, +1)
		}
	}
}

// mixed returns the set of podCIDRs that are not uniform, for the index
// to publish: prev's when no count crossed zero since. The caller holds mu.
func (l *Locator) mixed(prev *index) map[cidrRef]struct{} {
	if !l.strayed && prev != nil {
		return prev.mixed
	}
	l.strayed = false
	if len(l.strays) == 0 {
		return nil
	}
	m := make(map[cidrRef]struct{}, len(l.strays))
	for ref := range l.strays {
		m[ref] = struct{}{}
	}
	return m
}

// samePlace reports whether a and b are one node, zone and region.
func samePlace(a, b Location) bool {
	return a.Node == b.Node && a.Zone == b.Zone && a.Region == b.Region
}
