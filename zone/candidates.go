package zone

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	"github.com/hdns-dev/hdns/policy"
)

// candidate is an endpoint of a headless Service while the Service is
// being built, and only then: it merges the EndpointSlice endpoints of one
// Pod (its IPv4 and IPv6 addresses come in two slices), and holds what
// the build derives from them (the label of its own name, its identity
// for policy.Bind) in the plain fields that deriving needs. The snapshot
// keeps the compact member and policy.Endpoint made from it instead.
type candidate struct {
	// id is its identity for policy.Bind: Hostname is the label of its
	// own name; Key is set by endpointIDs.
	id     policy.EndpointID
	src    *Endpoint // the first of its endpoints
	alt    *Endpoint // the one of the other family, if any
	host   memberFlags
	v4, v6 netip.Addr
	ports  []Port // may share its array with a slice's Ports
}

// endpointIDs returns the candidates' identities for policy.Bind, in b's
// scratch until the next call. A Key identifies its candidate across
// replicas and snapshots: its Pod's namespace/name (the source's string),
// else its first address.
func (b *builder) endpointIDs(cands []*candidate) []policy.EndpointID {
	sc := &b.scratch
	ids := sc.ids[:0]
	for _, c := range cands {
		id := c.id
		id.Key = c.src.PodKey()
		ids = append(ids, id)
	}
	sc.packed(cands, func(c *candidate, b []byte) []byte {
		switch {
		case c.src.PodKey() != "":
			return b
		case c.v4.IsValid():
			return c.v4.AppendTo(b)
		default:
			return c.v6.AppendTo(b)
		}
	}, func(i int, key string) { ids[i].Key = key })
	sc.ids = ids
	return ids
}

// packed calls set with the string that write appends for each candidate
// (when it appends any), cut from one string: one allocation per Service
// where there were one per endpoint, and one block of memory that the
// snapshot's lifetime alone decides, not scattered among the build's
// garbage. Its working space is sc's.
func (sc *candidateScratch) packed(cands []*candidate, write func(c *candidate, b []byte) []byte, set func(i int, s string)) {
	sc.bytes, sc.ends = sc.bytes[:0], sc.ends[:0]
	for _, c := range cands {
		sc.bytes = write(c, sc.bytes)
		sc.ends = append(sc.ends, len(sc.bytes))
	}
	all, start := string(sc.bytes), 0
	for i, end := range sc.ends {
		if end > start {
			set(i, all[start:end])
		}
		start = end
	}
}

// candidateScratch is what building a Service (headlessCandidates, its
// PTR records) reuses from one Service to the next. A build's temporary data, allocated afresh per Service, would
// scatter among the snapshot's and leave its memory spans part-used once
// collected.
type candidateScratch struct {
	slices []*EndpointSlice
	cands  []candidate
	ptrs   []*candidate
	ids    []policy.EndpointID  // endpointIDs's
	byKey  map[candidateKey]int // index into cands
	// seen4 and seen6 are the addresses of the candidates so far: an
	// address repeated in another endpoint is its first one's.
	seen4  map[uint32]struct{}
	seen6  map[netip.Addr]struct{}
	addrs4 []uint32         // distinct4's
	byHost map[string]int32 // markRepeats's
	// bytes and ends are packed's: the strings it cuts, and where each
	// candidate's ends.
	bytes []byte
	ends  []int
	// ptrRecs are the PTR records of the shard being built (addPTR).
	ptrRecs ptrRecords
	// hosts are the named ready candidates of the EndpointSet being
	// built, before addOwnNames keeps the unique ones.
	hosts  []int32
	named  []namedIndex // sortByHost's
	dashed []uint64     // sortByDashed4's
	ins    inScratch    // the arrays of the set's choices' In lists
	// seq is 0, 1, 2, …: the In list of every choice that all of a
	// set's candidates answer (shareIn), shared by snapshots.
	seq []int
}

// candidateKey merges the endpoints of one Pod, or of one hostname, across
// slices.
type candidateKey struct {
	pod  bool
	name string
}

// headlessCandidates merges the ready endpoints of a Service's slices into
// candidates, in a stable order: slices by name, endpoints as listed.
// Candidates are the ready endpoints, and with offerTerminating also those
// that are terminating but still serving. They live in b's scratch until
// the next call.
func (b *builder) headlessCandidates(ss []*EndpointSlice, podNames, offerTerminating bool) []*candidate {
	sc := &b.scratch
	sc.reset()
	sc.slices = append(sc.slices[:0], ss...)
	slices.SortFunc(sc.slices, func(x, y *EndpointSlice) int { return strings.Compare(x.Name, y.Name) })
	// Endpoints merge only across address families: in slices of one
	// family, every endpoint is a candidate of its own.
	merge := slices.ContainsFunc(sc.slices, func(s *EndpointSlice) bool {
		return (s.AddressType == "IPv4") != (sc.slices[0].AddressType == "IPv4")
	})
	sc.cands = sc.cands[:0]
	distinct := sc.distinct4(offerTerminating)
	for _, s := range sc.slices {
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			ip, ok := offered(s, e, offerTerminating)
			if !ok || !distinct && !sc.firstSeen(ip) {
				continue
			}
			var key candidateKey
			switch {
			case !merge:
			case e.PodKey() != "":
				key = candidateKey{pod: true, name: e.PodKey()}
			case e.Hostname() != "":
				key = candidateKey{name: e.Hostname()}
			}
			k, ok := sc.byKey[key]
			if !ok || key.name == "" || (ip.Is4() && sc.cands[k].v4.IsValid()) || (ip.Is6() && sc.cands[k].v6.IsValid()) {
				k = len(sc.cands)
				sc.cands = append(sc.cands, candidate{src: e, id: policy.EndpointID{PodName: e.PodName(), Hostname: e.Hostname(),
					Ready: e.Ready, Serving: e.Serving, Terminating: e.Terminating,
				}})
				if t := e.Topology; t != nil {
					id := &sc.cands[len(sc.cands)-1].id
					id.Node, id.Zone, id.ForZones, id.ForNodes = t.NodeName, t.Zone, t.ForZones, t.ForNodes
				}
				if key.name != "" {
					sc.byKey[key] = k
				}
			}
			c := &sc.cands[k]
			if c.src != e {
				c.alt = e
			}
			if ip.Is4() {
				c.v4 = ip
			} else {
				c.v6 = ip
			}
			c.ports = mergePorts(c.ports, s.Ports)
		}
	}
	sc.ptrs = sc.ptrs[:0]
	for i := range sc.cands {
		sc.ptrs = append(sc.ptrs, &sc.cands[i])
	}
	sc.nameHosts(podNames)
	return sc.ptrs
}

// nameHosts sets the label of each candidate's own name: its hostname,
// else (with podNames) its Pod's name, else its dashed address.
func (sc *candidateScratch) nameHosts(podNames bool) {
	sc.packed(sc.ptrs, func(c *candidate, b []byte) []byte {
		switch {
		case isLabel(c.id.Hostname):
			c.host = hostFromHostname
		case podNames && isLabel(strings.ToLower(c.src.PodName())):
			c.id.Hostname, c.host = strings.ToLower(c.src.PodName()), hostFromPod
		case c.v4.IsValid():
			b, c.host = appendDashed(b, c.v4), hostFrom4
		default:
			b, c.host = appendDashed(b, c.v6), hostFrom6
		}
		return b
	}, func(i int, label string) { sc.ptrs[i].id.Hostname = label })
}

// reset empties the maps of headlessCandidates for the next Service.
func (sc *candidateScratch) reset() {
	if sc.byKey == nil {
		sc.byKey, sc.seen4, sc.seen6 = make(map[candidateKey]int), make(map[uint32]struct{}), make(map[netip.Addr]struct{})
	}
	clear(sc.byKey)
	clear(sc.seen4)
	clear(sc.seen6)
}

// offered returns the address of endpoint e of slice s when e is a
// candidate, or is one unless an earlier endpoint has its address: ready,
// or (with offerTerminating) terminating but serving, with an address of
// the slice's family.
func offered(s *EndpointSlice, e *Endpoint, offerTerminating bool) (netip.Addr, bool) {
	if !e.Ready && !(offerTerminating && e.Serving && e.Terminating) {
		return netip.Addr{}, false
	}
	ip := e.Address()
	return ip, ip.IsValid() && (s.AddressType == "IPv4") == ip.Is4()
}

// distinct4 reports whether the addresses offered in sc.slices are all
// IPv4 and all distinct, so that no endpoint repeats an earlier one's
// and headlessCandidates need not record them (firstSeen): one sorted
// list instead of a map insert per endpoint, and no sort at all when
// the slices list their addresses in order.
func (sc *candidateScratch) distinct4(offerTerminating bool) bool {
	addrs := sc.addrs4[:0]
	defer func() { sc.addrs4 = addrs[:0] }()
	for _, s := range sc.slices {
		for i := range s.Endpoints {
			ip, ok := offered(s, &s.Endpoints[i], offerTerminating)
			if !ok {
				continue
			}
			if !ip.Is4() {
				return false
			}
			b := ip.As4()
			addrs = append(addrs, binary.BigEndian.Uint32(b[:]))
		}
	}
	if !slices.IsSorted(addrs) {
		slices.Sort(addrs)
	}
	for i := 1; i < len(addrs); i++ {
		if addrs[i] == addrs[i-1] {
			return false
		}
	}
	return true
}

// firstSeen records ip among the candidates' addresses and reports
// whether it was new.
func (sc *candidateScratch) firstSeen(ip netip.Addr) bool {
	n := len(sc.seen4) + len(sc.seen6)
	if ip.Is4() {
		b := ip.As4()
		sc.seen4[binary.BigEndian.Uint32(b[:])] = struct{}{}
	} else {
		sc.seen6[ip] = struct{}{}
	}
	return len(sc.seen4)+len(sc.seen6) > n
}

// repeats reports whether a port appears twice in ports.
func repeats(ports []Port) bool {
	for i, p := range ports {
		if slices.Contains(ports[:i], p) {
			return true
		}
	}
	return false
}

// mergePorts adds the ports of more that have lacks. The result may share
// its array with either argument: it is clipped, so that appending to it
// copies.
func mergePorts(have, more []Port) []Port {
	if len(have) == 0 && !repeats(more) {
		return slices.Clip(more)
	}
	for _, p := range more {
		if !slices.Contains(have, p) {
			have = append(slices.Clip(have), p)
		}
	}
	return have
}
