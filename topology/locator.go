// Package topology finds where the asker of a DNS query is: it maps a
// client address to the cluster node it runs on, and the node to its zone
// and region. It owns the index of addresses it learns from Nodes (their
// status.addresses and spec.podCIDRs) and from EndpointSlices (every
// endpoint with a nodeName), kept by a Locator that sits as a zone.Sink in
// front of the zone's Publisher, and the Location it answers.
//
// Precedence, from the most to the least specific:
//
//  1. node-address: the address is in a Node's status.addresses (a
//     hostNetwork client, or a cache forwarding from the node);
//  2. endpoint: the address is an EndpointSlice endpoint's, and the
//     endpoint names its node (a pod backing any Service);
//  3. pod-cidr: the address is in a Node's spec.podCIDRs, longest prefix
//     first (any pod, where the CNI allocates per-node ranges);
//  4. unknown: nothing matched.
//
// Exact addresses come before prefixes: a CNI may allocate pod addresses
// outside the podCIDRs the control plane assigns, and a node's own address
// may lie in another node's range. Where two claims of one rank disagree
// (an address two Nodes list, a stale slice naming another node, two
// Nodes with one podCIDR), the node whose name sorts first wins, whatever
// order the objects came in. The zone and region are the Node's labels;
// when the Node is unknown (deleted while its pods still serve) or has no
// zone label, an endpoint's own zone field stands in for the zone.
//
// It imports zone for the objects and nothing of server/, policy/,
// source/ or adopt/: those consume a Locator, never the reverse.
package topology

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/hdns-dev/hdns/zone"
)

// Method says how a client was located.
type Method uint8

const (
	Unknown Method = iota
	ByNodeAddress
	ByEndpoint
	ByPodCIDR
)

func (s Method) String() string {
	switch s {
	case ByNodeAddress:
		return "node-address"
	case ByEndpoint:
		return "endpoint"
	case ByPodCIDR:
		return "pod-cidr"
	}
	return "unknown"
}

// Location is where a client is. The zero value is an unknown client;
// a known one always has Node, and Zone and Region when known.
type Location struct {
	Node, Zone, Region string
	By                 Method
	// Bits is the length of the prefix the client's Location holds for:
	// every address sharing its first Bits bits with the client's is
	// located on the same Node, Zone and Region, so that an answer that
	// depends only on them holds for the whole prefix (an EDNS Client
	// Subnet scope). It is the length of the podCIDR that holds the
	// address when that podCIDR is uniform (no address in it is claimed
	// exactly for another place, and no longer podCIDR of another place
	// lies inside it), whatever the Method: a pod that backs a Service
	// shares its node's prefix. Else it is the address's length (32, 128);
	// 0 when unknown.
	Bits uint8
}

// Locator is a zone.Sink that hands every call on to Next and indexes, on
// the side, the addresses of Nodes and endpoints; Locate reads the index.
// Create it with New.
//
// A batch of changes costs in proportion to the addresses it changes,
// except that a change of a Node re-indexes the podCIDRs of all Nodes
// (Nodes change seldom once heartbeats are dropped at the informer).
// Locate reads an immutable index through an atomic pointer: no lock, no
// allocation.
type Locator struct {
	next    zone.Sink
	current atomic.Pointer[index]

	mu     sync.Mutex
	nodes  map[string]*zone.ClusterNode
	slices map[zone.ObjectKey]*zone.EndpointSlice
	claims map[addrKey][]claim // every claim on each address
	exact  trieWriter
	cidrs  *cidrTable
	// strays counts, per podCIDR, what keeps it from being uniform;
	// strayed is set when a count crossed zero since the last publish.
	strays  map[cidrRef]int32
	strayed bool
}

// index is one published version of what the Locator knows.
type index struct {
	exact *level1
	seed  uint64
	nodes map[string]*zone.ClusterNode
	cidrs *cidrTable
	mixed map[cidrRef]struct{} // the podCIDRs that are not uniform
}

// New returns a Locator in front of next.
func New(next zone.Sink) *Locator {
	l := &Locator{
		next:   next,
		nodes:  make(map[string]*zone.ClusterNode),
		slices: make(map[zone.ObjectKey]*zone.EndpointSlice),
		claims: make(map[addrKey][]claim),
		exact:  trieWriter{seed: newSeed()},
		cidrs:  new(cidrTable),
		strays: make(map[cidrRef]int32),
	}
	l.publish(true)
	return l
}

var _ zone.Sink = (*Locator)(nil)

// Locate returns where the client at a is. IPv4-mapped IPv6 addresses
// are located as the IPv4 address they map.
func (l *Locator) Locate(a netip.Addr) Location {
	ix := l.current.Load()
	a = a.Unmap()
	if !a.IsValid() {
		return Location{}
	}
	// A uniform podCIDR locates every address in it alike, the exactly
	// claimed ones included (a claim elsewhere would make it mixed).
	name, ref, inCIDR := ix.cidrs.lookup(a)
	bits := uint8(a.BitLen())
	if _, mixed := ix.mixed[ref]; inCIDR && !mixed {
		bits = uint8(ref.bits)
	}
	k := addrKey(a.As16())
	if h, ok := get(ix.exact, &k, ix.seed); ok {
		return resolve(ix.nodes, h.node, h.zone, h.by, bits)
	}
	if inCIDR {
		return resolve(ix.nodes, name, "", ByPodCIDR, bits)
	}
	return Location{}
}

// resolve completes the Location of a client found on node.
func resolve(nodes map[string]*zone.ClusterNode, node, fallbackZone string, by Method, bits uint8) Location {
	loc := Location{Node: node, By: by, Bits: bits}
	if n, ok := nodes[node]; ok {
		loc.Zone, loc.Region = n.Zone, n.Region
	}
	if loc.Zone == "" {
		loc.Zone = fallbackZone
	}
	return loc
}

// Apply implements zone.Sink: next records changes first.
func (l *Locator) Apply(changes ...zone.Change) {
	l.next.Apply(changes...)
	l.mu.Lock()
	defer l.mu.Unlock()
	nodesMoved := false
	for _, c := range changes {
		switch c.Kind {
		case zone.ObjectNode:
			nodesMoved = l.applyNode(c) || nodesMoved
		case zone.ObjectEndpointSlice:
			l.applySlice(c)
		}
	}
	l.publish(nodesMoved)
}

// Replace implements zone.Sink: next records the view first. Slices
// held and not in it are forgotten; Nodes, which Replace does not carry,
// stay.
func (l *Locator) Replace(services []*zone.Service, slices []*zone.EndpointSlice) {
	l.next.Replace(services, slices)
	l.mu.Lock()
	defer l.mu.Unlock()
	keep := make(map[zone.ObjectKey]bool, len(slices))
	for _, s := range slices {
		c := zone.SliceChange(zone.OpUpsert, s)
		keep[c.Key()] = true
		l.applySlice(c)
	}
	for k, s := range l.slices {
		if !keep[k] {
			l.applySlice(zone.SliceChange(zone.OpDelete, s))
		}
	}
	l.publish(false)
}

// publish makes the writer's state the index Locate reads, and starts a
// new batch. The caller holds mu (or owns l). nodesMoved re-indexes the
// Nodes.
func (l *Locator) publish(nodesMoved bool) {
	prev := l.current.Load()
	if prev != nil && !nodesMoved && prev.exact == l.exact.root {
		return // the batch wrote nothing: a write copies the root
	}
	ix := &index{exact: l.exact.root, seed: l.exact.seed}
	if nodesMoved || prev == nil {
		ix.nodes = make(map[string]*zone.ClusterNode, len(l.nodes))
		for name, n := range l.nodes {
			ix.nodes[name] = n
		}
		l.cidrs = buildCIDRs(l.nodes)
		l.recountStrays()
	} else {
		ix.nodes = prev.nodes
	}
	ix.cidrs = l.cidrs
	ix.mixed = l.mixed(prev)
	l.current.Store(ix)
	l.exact.gen++
}

// Stats counts what the index holds: Nodes, EndpointSlices, and distinct
// addresses with a claim.
type Stats struct{ Nodes, Slices, Addresses int }

// Stats returns the counts of what the Locator holds.
func (l *Locator) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Nodes: len(l.nodes), Slices: len(l.slices), Addresses: len(l.claims)}
}
