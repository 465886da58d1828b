package zone

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
)

// addHeadless adds a headless Service's names in one zone: its
// EndpointSet, the choices of its name and ports, its endpoints' own names
// and, in the primary zone, their PTR records. The Service's policy
// compiles and binds its endpoints in the Compiler; the zone only lists
// them.
func (b *builder) addHeadless(svc *Service, ss []*EndpointSlice, owner string, apex *Apex, primary bool) {
	key := svc.Namespace + "/" + svc.Name
	sp := b.opts.Policies.CompileService(policy.ServicePolicy{Service: key, Annotation: svc.Policy,
		Weights: svc.Weights, LoadQuery: svc.LoadQuery, AffinityTimeout: svc.AffinityTimeout,
		TrafficDistribution: svc.TrafficDistribution, Hints: hintedDistribution(ss)})
	if sp.Chain == nil {
		return // only when the default policy itself is broken, which flags prevent
	}
	if sp.Err != nil && primary {
		// Reported whether or not the Service has endpoints now, so that a
		// Service going to zero endpoints and back is not news; once, not
		// once per zone.
		b.sh.policyErr = sp.Err
	}
	cands := b.headlessCandidates(ss, b.opts.EndpointPodNames, sp.Chain.OfferTerminating())
	if len(cands) == 0 {
		return // no ready endpoint: the name does not exist
	}
	ttl := b.opts.TTL
	if t := sp.Chain.TTL(); t != 0 {
		ttl = t
	}
	set := &EndpointSet{Namespace: svc.Namespace, Service: svc.Name, Policy: sp.Chain, PolicyErr: sp.Err, TTL: ttl,
		owner: owner, srvWeight: uint16(max(1, 100/len(cands)))}
	set.Candidates = cut(&b.cands, len(cands))
	set.members = cut(&b.members, len(cands))
	sp.Previous = b.prev
	sp.Bind(b.endpointIDs(cands), set.Candidates)
	if primary {
		b.sh.bound = set.Candidates
	}
	ch := newSetChoices(set, len(cands), &b.scratch.ins)
	set.hosts = b.scratch.hosts[:0]
	for i, c := range cands {
		b.addMember(set, &ch, i, c, primary)
	}
	b.addOwnNames(set, cands, apex)
	set.markRepeats(cands, &b.scratch.byHost)
	ch.publish(b, apex)
	if primary {
		b.sh.endpoints += len(cands)
	}
}

// setChoices are the choices a headless Service's candidates answer: its
// name's A, AAAA and SRV questions, and each named port's SRV question.
type setChoices struct {
	n           int // candidates
	a4, a6, all *Choice
	portChoices map[Port]*Choice // by Name and Protocol
	portOrder   []*Choice
	ports       portFilter
	ins         *inScratch // where the choices' In lists grow
	// last are the port choices of the portSets entry lastPorts (0:
	// none yet): a slice's candidates share one entry.
	last      []*Choice
	lastPorts uint16
}

func newSetChoices(set *EndpointSet, n int, ins *inScratch) setChoices {
	return setChoices{
		n:           n,
		a4:          &Choice{Set: set, Owner: set.owner, Qtype: dns.TypeA, In: ins.take()},
		a6:          &Choice{Set: set, Owner: set.owner, Qtype: dns.TypeAAAA, In: ins.take()},
		all:         &Choice{Set: set, Owner: set.owner, Qtype: dns.TypeSRV, In: ins.take()},
		portChoices: map[Port]*Choice{},
		ins:         ins,
	}
}

// inScratch lends the choices of the set being built the arrays their
// In lists grow in, kept from one Service to the next: publish copies
// out only the lists that are not every candidate (shareIn), so that a
// Service's rebuild allocates no list of all its candidates.
type inScratch struct {
	lists [][]int
	used  int
}

// take lends the next array, empty; publish gives them all back, in the
// order they were taken.
func (s *inScratch) take() []int {
	if s.used == len(s.lists) {
		s.lists = append(s.lists, nil)
	}
	s.used++
	return s.lists[s.used-1][:0]
}

// addMember fills in candidate i's member and adds it to the choices it
// answers; in the primary zone, also its PTR records.
func (b *builder) addMember(set *EndpointSet, ch *setChoices, i int, c *candidate, primary bool) {
	m := &set.members[i]
	m.src, m.alt, m.flags = c.src, c.alt, c.host
	if c.v4.IsValid() {
		m.flags |= has4
		ch.a4.add(i)
	}
	if c.v6.IsValid() {
		m.flags |= has6
		ch.a6.add(i)
	}
	// An endpoint whose name would pass 255 octets answers under the
	// Service name only: no name, SRV or PTR records of its own.
	if !fitsLen(len(c.id.Hostname) + 1 + len(set.owner)) {
		return
	}
	m.flags |= named
	// Own names and PTR records name ready endpoints only; a drain
	// step may also offer terminating ones to the Service name.
	if c.id.Ready {
		set.hosts = append(set.hosts, int32(i))
		if primary {
			b.addMemberPTRs(set, i, c)
		}
	}
	m.ports = ch.ports.named(c.ports, set.owner, set)
	for _, pc := range ch.portChoicesOf(set, m) {
		pc.add(i)
	}
	if m.ports != 0 {
		ch.all.add(i)
	}
}

// portChoicesOf returns the choices of m's ports, one per port, making
// those that do not exist yet. They are valid until the next call.
func (ch *setChoices) portChoicesOf(set *EndpointSet, m *member) []*Choice {
	if m.ports == ch.lastPorts && m.ports != 0 {
		return ch.last
	}
	ch.last, ch.lastPorts = ch.last[:0], m.ports
	mports := set.ports(m)
	for k, p := range mports {
		pk := Port{Name: p.Name, Protocol: p.Protocol}
		pc := ch.portChoices[pk]
		if pc == nil {
			pc = &Choice{Set: set, Owner: "_" + p.Name + "._" + p.Protocol + "." + set.owner, Qtype: dns.TypeSRV, Port: &mports[k],
				In: ch.ins.take()}
			ch.portChoices[pk] = pc
			ch.portOrder = append(ch.portOrder, pc)
		}
		ch.last = append(ch.last, pc)
	}
	return ch.last
}

// addMemberPTRs adds the PTR records of candidate i's addresses: to the
// name its address spells when the candidate is named after that
// address, which keeps the record the same whatever the candidate's
// index.
func (b *builder) addMemberPTRs(set *EndpointSet, i int, c *candidate) {
	for _, ip := range []netip.Addr{c.v4, c.v6} {
		if !ip.IsValid() {
			continue
		}
		to := ptrTarget{set: set, idx: uint32(i)}
		if c.host == hostFrom4 && ip.Is4() || c.host == hostFrom6 && ip.Is6() {
			to = ptrTarget{set: b.ptrNames(set.Namespace, set.Service, set.owner), idx: dashedTarget}
		}
		b.addPTR(ip, to)
	}
}

// publish shares the choices' candidate lists and puts the choices that
// answer anything on their nodes.
func (ch *setChoices) publish(b *builder, apex *Apex) {
	for k, c := range append([]*Choice{ch.a4, ch.a6, ch.all}, ch.portOrder...) {
		ch.ins.lists[k] = c.In[:0]
		c.In = b.shareIn(c.In, ch.n)
	}
	ch.ins.used = 0
	n := b.node(ch.a4.Owner, apex)
	if len(ch.a4.In) > 0 {
		n.ChosenA = ch.a4
	}
	if len(ch.a6.In) > 0 {
		n.ChosenAAAA = ch.a6
	}
	if len(ch.all.In) > 0 {
		n.ChosenSRV = ch.all
	}
	for _, pc := range ch.portOrder {
		b.node(pc.Owner, apex).ChosenSRV = pc
	}
}

// add makes candidate i answer c, once.
func (c *Choice) add(i int) {
	if len(c.In) == 0 || c.In[len(c.In)-1] != i {
		c.In = append(c.In, i)
	}
}

// addOwnNames indexes the own names of set's ready named candidates for
// Lookup. A hostname that two candidates share gets a stored node with
// both their addresses instead.
func (b *builder) addOwnNames(set *EndpointSet, cands []*candidate, apex *Apex) {
	host := func(i int32) string { return cands[i].id.Hostname }
	b.sortByHost(set.hosts, cands)
	unique := set.hosts[:0]
	for k := 0; k < len(set.hosts); {
		run := k + 1
		for run < len(set.hosts) && host(set.hosts[run]) == host(set.hosts[k]) {
			run++
		}
		if run == k+1 {
			unique = append(unique, set.hosts[k])
		} else {
			name := host(set.hosts[k]) + "." + set.owner
			n := b.node(name, apex)
			for _, i := range set.hosts[k:run] {
				for _, ip := range []netip.Addr{cands[i].v4, cands[i].v6} {
					if ip.IsValid() {
						n.addAddr(name, ip, set.TTL)
					}
				}
			}
		}
		k = run
	}
	b.scratch.hosts = set.hosts[:0]
	set.hosts = cut(&b.hosts, len(unique))
	copy(set.hosts, unique)
	b.sh.ownNames += len(set.hosts)
}

// sortByHost sorts hosts (indexes into cands) by hostname; candidates of
// one hostname keep their order, as a stable sort would keep them. It
// sorts copies of the hostnames beside their indexes (scratch space kept
// from one call to the next), which reads each candidate once instead of
// twice per comparison.
func (b *builder) sortByHost(hosts []int32, cands []*candidate) {
	if b.sortByDashed4(hosts, cands) {
		return
	}
	named := b.scratch.named[:0]
	for _, i := range hosts {
		named = append(named, namedIndex{cands[i].id.Hostname, i})
	}
	byHost := func(x, y namedIndex) int { return cmp.Or(strings.Compare(x.host, y.host), cmp.Compare(x.i, y.i)) }
	if !slices.IsSortedFunc(named, byHost) {
		slices.SortFunc(named, byHost)
	}
	for k := range named {
		hosts[k] = named[k].i
	}
	clear(named) // drop the strings
	b.scratch.named = named[:0]
}

// namedIndex is a candidate's index and its hostname, as sortByHost sorts
// them.
type namedIndex struct {
	host string
	i    int32
}

// sortByDashed4 is sortByHost when every hostname is a dashed IPv4
// address (hostFrom4, the own name of a Pod without a hostname), sorting
// integers instead of strings; false, having done nothing, otherwise.
func (b *builder) sortByDashed4(hosts []int32, cands []*candidate) bool {
	keys := b.scratch.dashed[:0]
	for _, i := range hosts {
		c := cands[i]
		if c.host != hostFrom4 {
			b.scratch.dashed = keys
			return false
		}
		a := c.v4.As4()
		rank := uint64(dashedRank[a[0]])<<24 | uint64(dashedRank[a[1]])<<16 | uint64(dashedRank[a[2]])<<8 | uint64(dashedRank[a[3]])
		keys = append(keys, rank<<32|uint64(uint32(i)))
	}
	if !slices.IsSorted(keys) {
		slices.Sort(keys)
	}
	for k, key := range keys {
		hosts[k] = int32(uint32(key))
	}
	b.scratch.dashed = keys[:0]
	return true
}

// dashedRank ranks each octet by its decimal spelling, as strings sort:
// dashed IPv4 addresses sort as strings exactly as their octets' ranks
// do, in order, since a dash and the name's end both come before every
// digit.
var dashedRank = func() (rank [256]uint8) {
	octets := make([]int, 256)
	for i := range octets {
		octets[i] = i
	}
	slices.SortFunc(octets, func(x, y int) int { return strings.Compare(strconv.Itoa(x), strconv.Itoa(y)) })
	for r, o := range octets {
		rank[o] = uint8(r)
	}
	return rank
}()

// markRepeats flags the candidates whose SRV records may repeat records
// of the same answer: those whose own name another candidate shares (two
// endpoints of one hostname), and those with a port number twice. The
// answer drops identical records (RFC 2181 5) and checks only these.
// Own names share the set's owner, so that equal names are equal
// hostnames (cands's, from which the members were made); byHost is
// scratch space, kept from one call to the next.
func (s *EndpointSet) markRepeats(cands []*candidate, byHost *map[string]int32) {
	if *byHost == nil {
		*byHost = make(map[string]int32)
	}
	byName := *byHost
	clear(byName)
	// Names spelled from addresses are distinct: candidates' addresses
	// are, and a dashed IPv4 address never spells an IPv6 one. Only a
	// hostname or a Pod's name can repeat another's.
	namesMayRepeat := slices.ContainsFunc(s.members, func(m member) bool {
		return m.flags&hostFrom == hostFromHostname || m.flags&hostFrom == hostFromPod
	})
	for i := range s.members {
		m := &s.members[i]
		if m.flags&named == 0 || m.ports == 0 {
			continue
		}
		if namesMayRepeat {
			if first, ok := byName[cands[i].id.Hostname]; ok {
				m.flags |= repeatsSRV
				s.members[first].flags |= repeatsSRV
			} else {
				byName[cands[i].id.Hostname] = int32(i)
			}
		}
		ports := s.ports(m)
		for k := range ports {
			if slices.ContainsFunc(ports[k+1:], func(p Port) bool { return p.Port == ports[k].Port }) {
				m.flags |= repeatsSRV
			}
		}
	}
}

// portFilter keeps the ports that get SRV records: named, with owner names
// that fit. Candidates of one slice share its ports, and so their entry in
// the set's portSets.
type portFilter struct {
	in    []Port
	index uint16
}

// named returns the index in set.portSets of ports' named ports, adding
// them; 0 when there are none. The cache remembers the last list only: a
// slice's candidates share one entry, and a dual-stack candidate whose
// two slices list different ports gets one of its own. A Service with
// more than 65,535 entries answers the candidates past them without SRV
// records.
func (f *portFilter) named(ports []Port, owner string, set *EndpointSet) uint16 {
	if len(ports) == 0 {
		return 0
	}
	if len(f.in) == len(ports) && &f.in[0] == &ports[0] {
		return f.index
	}
	var out []Port
	for _, p := range ports {
		if isLabel(p.Name) && fits("_"+p.Name+"._"+p.Protocol+"."+owner) {
			out = append(out, p)
		}
	}
	if len(out) == len(ports) {
		out = ports
	}
	f.in, f.index = ports, 0
	if len(out) > 0 && len(set.portSets) <= math.MaxUint16 {
		if len(set.portSets) == 0 {
			set.portSets = append(set.portSets, nil)
		}
		f.index = uint16(len(set.portSets))
		set.portSets = append(set.portSets, out)
	}
	return f.index
}

// cut returns the next n zero elements of *arena, extending it: a slice
// whose capacity ends where it does, so that no append reaches the next.
// Past the arena's capacity it continues in a new array; earlier cuts stay
// valid in the old one.
func cut[T any](arena *[]T, n int) []T {
	start := len(*arena)
	*arena = append(*arena, make([]T, n)...)
	return (*arena)[start:len(*arena):len(*arena)]
}

// shareIn returns a copy of in, which may be scratch space, or, when it
// holds every one of n candidates (and so is 0, 1, …, n-1), the one such
// slice, read-only and shared by every choice of that size and by later
// builds; nil when in is empty.
func (b *builder) shareIn(in []int, n int) []int {
	if len(in) != n {
		return slices.Clip(slices.Clone(in))
	}
	seq := &b.scratch.seq
	for len(*seq) < n {
		// Appending never writes where a shared slice reads: each ends
		// at its capacity, within the part already written.
		*seq = append(*seq, len(*seq))
	}
	return (*seq)[:n:n]
}
