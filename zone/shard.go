package zone

import (
	"hash/maphash"
	"slices"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
)

// serviceKey names a Service, or the Service an EndpointSlice belongs to.
type serviceKey struct{ Namespace, Name string }

func keyOf(s *Service) serviceKey { return serviceKey{s.Namespace, s.Name} }

func sliceOwner(s *EndpointSlice) serviceKey { return serviceKey{s.Namespace, s.Service} }

// shard is what one Service adds to a Snapshot, in every zone: its stored
// nodes, its EndpointSets (reached from the nodes and the PTR records),
// its PTR records, and what it counts. Snapshots share a Service's shard
// until a change touches the Service; a shard, like a Snapshot, never
// changes once built.
type shard struct {
	// nodes are the Service's stored nodes, by name; ents the empty
	// non-terminals at or below its names that it alone makes exist
	// (_tcp.<name>).
	nodes, ents []nameEntry
	// above are the empty non-terminals between its names and their
	// apexes (<namespace>.svc.<zone>, svc.<zone>), which other Services
	// may make exist too: they exist while some shard names them.
	above []nameEntry
	ptrs  ptrRecords
	// ptrNames holds the Service's names for its PTR records of fixed and
	// dashed targets (ptrTarget); every build of the Service shares it.
	ptrNames *EndpointSet
	// endpoints counts its ready endpoints, ownNames its endpoints' own
	// names without a stored node.
	endpoints, ownNames int
	policyErr           error
	// bound are the endpoints of its EndpointSet in the primary zone, as
	// policy bound them: the next build of the Service binds after them
	// (policy.ServiceChain.Previous).
	bound []policy.Endpoint
}

// buildShard builds svc's shard from its slices; prev is the shard it
// replaces, or nil.
func (b *builder) buildShard(svc *Service, ss []*EndpointSlice, prev *shard) *shard {
	sh := &shard{}
	b.sh, b.prev = sh, nil
	if prev != nil {
		b.prev, sh.ptrNames = prev.bound, prev.ptrNames
	}
	recs := &b.scratch.ptrRecs
	recs.v4, recs.v6 = recs.v4[:0], recs.v6[:0]
	b.reserve(svc, ss)
	clear(b.names)
	for _, z := range b.opts.Zones {
		b.addService(svc, ss, z, z == b.opts.Zones[0])
	}
	sh.ptrs = ptrRecords{v4: sealedCopy(recs.v4), v6: sealedCopy(recs.v6)}
	for name, n := range b.names {
		sh.nodes = append(sh.nodes, nameEntry{name, n})
	}
	b.emptyNonTerminals(func(name string, n *Node) {
		owner := svc.Name + "." + svc.Namespace + ".svc." + n.Apex.Name
		if InZone(name, owner) {
			sh.ents = append(sh.ents, nameEntry{name, n})
		} else {
			sh.above = append(sh.above, nameEntry{name, n})
		}
	})
	b.sh, b.prev = nil, nil
	return sh
}

// ptrNames returns the holder of the names of the Service being built,
// in the primary zone, that its PTR records of fixed and dashed targets
// point to: the one its previous build made, whose names are the same,
// so that such records are equal in both builds.
func (b *builder) ptrNames(namespace, service, owner string) *EndpointSet {
	if b.sh.ptrNames == nil {
		b.sh.ptrNames = &EndpointSet{Namespace: namespace, Service: service, owner: owner}
	}
	return b.sh.ptrNames
}

// emptyNonTerminals calls f with the node of every missing ancestor of
// b.names, up to its apex, once each (RFC 8020: a name with names below
// it is NODATA, never NXDOMAIN). The apexes always exist.
func (b *builder) emptyNonTerminals(f func(name string, n *Node)) {
	seen := make(map[string]bool)
	for name, n := range b.names {
		for p := parent(name); p != "" && InZone(p, n.Apex.Name) && p != n.Apex.Name; p = parent(p) {
			if _, ok := b.names[p]; ok || seen[p] {
				break
			}
			seen[p] = true
			f(p, n.Apex.empty)
		}
	}
}

// staticNames returns the nodes of the apexes and of the names every
// zone has (ns.dns.<zone>, dns-version.<zone>), with their empty
// non-terminals.
func (b *builder) staticNames() map[string]*Node {
	out := make(map[string]*Node, len(b.names)+len(b.apexes))
	for name, n := range b.names {
		out[name] = n
	}
	b.emptyNonTerminals(func(name string, n *Node) { out[name] = n })
	clear(b.names)
	return out
}

// buildFull builds a Snapshot of every Service, and the state that later
// snapshots are built from by changing some Services only.
func buildFull(opts *Options, serial uint32, services []*Service, slices []*EndpointSlice) (*Snapshot, *zoneState) {
	b := newBuilder(opts, serial)
	static := b.staticNames()
	slicesOf := make(map[serviceKey][]*EndpointSlice)
	for _, s := range slices {
		slicesOf[sliceOwner(s)] = append(slicesOf[sliceOwner(s)], s)
	}
	st := newZoneState(opts)
	for _, svc := range services {
		st.put(keyOf(svc), b.buildShard(svc, slicesOf[keyOf(svc)], nil), svc, nil)
	}
	return st.assemble(b, static, services), st
}

// assemble makes the Snapshot of every shard of st, in services's order,
// and static.
func (st *zoneState) assemble(b *builder, static map[string]*Node, services []*Service) *Snapshot {
	names := static
	var ents []nameEntry
	var ptrs ptrRecords
	for _, svc := range services {
		sh := st.shards[keyOf(svc)]
		for _, e := range sh.nodes {
			names[e.name] = mergeNodes(names[e.name], e.node)
		}
		ents = append(ents, sh.ents...)
		ptrs.v4 = append(ptrs.v4, sh.ptrs.v4...)
		ptrs.v6 = append(ptrs.v6, sh.ptrs.v6...)
	}
	for _, a := range st.above {
		ents = append(ents, nameEntry{a.name, a.node})
	}
	for _, e := range ents {
		if _, ok := names[e.name]; !ok {
			names[e.name] = e.node
		}
	}
	ptrs.seal()
	st.names = newNameTable(maphash.MakeSeed(), len(names))
	st.names.fill(names)
	st.ptrs = ptrIndex{ttl: st.opts.TTL}
	st.ptrs.v4 = newPTRSeq(ptrs.v4)
	st.ptrs.v6 = newPTRSeq(ptrs.v6)
	snap := &Snapshot{Serial: b.serial, apexes: b.apexes, names: st.names, ptrs: st.ptrs}
	st.finish(snap)
	return snap
}

// mergeNodes returns a node with the records of both, when two sources
// name one node: only where zones nest, or a reverse zone is one
// address's name (its apex then holds PTR records too). Snapshots built
// from such options are always built whole.
func mergeNodes(have, add *Node) *Node {
	if have == nil {
		return add
	}
	n := *have
	n.FixedA = append(slices.Clip(n.FixedA), add.FixedA...)
	n.FixedAAAA = append(slices.Clip(n.FixedAAAA), add.FixedAAAA...)
	for _, rr := range add.PTR {
		if !slices.ContainsFunc(n.PTR, func(h dns.RR) bool { return h.String() == rr.String() }) {
			n.PTR = append(slices.Clip(n.PTR), rr)
		}
	}
	n.ChosenA = cmpOr(n.ChosenA, add.ChosenA)
	n.ChosenAAAA = cmpOr(n.ChosenAAAA, add.ChosenAAAA)
	n.ChosenSRV = cmpOr(n.ChosenSRV, add.ChosenSRV)
	n.rare = cmpOr(n.rare, add.rare)
	return &n
}

func cmpOr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// finish fills in what a Snapshot counts from st.
func (st *zoneState) finish(snap *Snapshot) {
	snap.Stats = Stats{Services: len(st.shards), Endpoints: st.endpoints,
		Names: snap.names.count + snap.ptrs.owners() + st.ownNames}
	snap.PolicyErrors = st.policyErrors()
	snap.Built = time.Now()
}
