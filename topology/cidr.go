package topology

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/hdns-dev/hdns/zone"
)

// cidrTable finds the node whose podCIDR holds an address, longest prefix
// first. It holds one map per prefix length in use, and a cluster uses
// one or two per family, so a lookup is a few masked map reads. It is
// immutable once built.
type cidrTable struct {
	v4, v6 []prefixLen // longest first
}

type prefixLen struct {
	bits  int
	nodes map[addrKey]string // masked prefix address → node name
}

// buildCIDRs indexes the podCIDRs of nodes. Two nodes that claim one
// prefix: the node whose name sorts first has it, so that the answer does
// not depend on the order the nodes came in.
func buildCIDRs(nodes map[string]*zone.ClusterNode) *cidrTable {
	byLen := make(map[int]map[addrKey]string) // bits, +1000 for IPv6
	for name, n := range nodes {
		for _, p := range n.PodCIDRs {
			l := p.Bits()
			if p.Addr().Is6() {
				l += 1000
			}
			m := byLen[l]
			if m == nil {
				m = make(map[addrKey]string)
				byLen[l] = m
			}
			k := addrKey(p.Addr().As16())
			if held, ok := m[k]; !ok || name < held {
				m[k] = name
			}
		}
	}
	t := new(cidrTable)
	for l, m := range byLen {
		if l >= 1000 {
			t.v6 = append(t.v6, prefixLen{bits: l - 1000, nodes: m})
		} else {
			t.v4 = append(t.v4, prefixLen{bits: l, nodes: m})
		}
	}
	longestFirst := func(a, b prefixLen) int { return cmp.Compare(b.bits, a.bits) }
	slices.SortFunc(t.v4, longestFirst)
	slices.SortFunc(t.v6, longestFirst)
	return t
}

// cidrRef names one podCIDR: its masked address and length.
type cidrRef struct {
	key  addrKey
	bits int
}

// lookup returns the node whose longest podCIDR holds a, an unmapped
// address, and that podCIDR.
func (t *cidrTable) lookup(a netip.Addr) (string, cidrRef, bool) {
	lens := t.v6
	if a.Is4() {
		lens = t.v4
	}
	for i := range lens {
		p, err := a.Prefix(lens[i].bits)
		if err != nil {
			continue
		}
		ref := cidrRef{key: addrKey(p.Addr().As16()), bits: lens[i].bits}
		if name, ok := lens[i].nodes[ref.key]; ok {
			return name, ref, true
		}
	}
	return "", cidrRef{}, false
}
