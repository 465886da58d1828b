package zone

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
)

func (b *builder) addHeadless(svc *Service, ss []*EndpointSlice, owner string, apex *Apex, primary bool) {
	key := svc.Namespace + "/" + svc.Name
	chain, perr := b.opts.Policies.Compile(policy.ServicePolicy{Service: key, Annotation: svc.Policy, AffinityTimeout: svc.AffinityTimeout})
	if chain == nil {
		return // only when the default policy itself is broken, which flags prevent
	}
	weights, werr := parseWeights(svc.Weights)
	if werr != nil {
		werr = fmt.Errorf("%w; every endpoint weighs 1", werr)
	}
	policyErr := errors.Join(perr, werr)
	if policyErr != nil && primary {
		// Reported whether or not the Service has endpoints now, so that a
		// Service going to zero endpoints and back is not news; once, not
		// once per zone.
		b.snap.PolicyErrors = append(b.snap.PolicyErrors, PolicyError{Service: key, Err: policyErr})
	}
	cands := b.headlessCandidates(ss, b.opts.EndpointPodNames, chain.OfferTerminating())
	if len(cands) == 0 {
		return // no ready endpoint: the name does not exist
	}
	ttl := b.opts.TTL
	if t := chain.TTL(); t != 0 {
		ttl = t
	}
	set := &EndpointSet{Namespace: svc.Namespace, Service: svc.Name, Policy: chain, PolicyErr: policyErr, TTL: ttl,
		owner: owner, srvWeight: uint16(max(1, 100/len(cands)))}
	n := b.node(owner, apex)
	a4 := &Choice{Set: set, Owner: owner, Qtype: dns.TypeA}
	a6 := &Choice{Set: set, Owner: owner, Qtype: dns.TypeAAAA}
	all := &Choice{Set: set, Owner: owner, Qtype: dns.TypeSRV}
	portChoices := map[Port]*Choice{} // by Name and Protocol
	var portOrder []*Choice
	var ports portFilter
	set.Candidates = cut(&b.cands, len(cands))
	set.members = cut(&b.members, len(cands))
	loadQuery := ""
	if b.opts.LoadQuery != "" && chain.UsesLoad() {
		loadQuery = cmp.Or(svc.LoadQuery, b.opts.LoadQuery)
	}
	keys := candidateKeys(cands)
	ptrSet := -1 // set's index among the PTR targets, once it has one
	for i, c := range cands {
		c.ep.Key = keys[i]
		c.ep.Load = b.opts.Policies.Load(c.ep.Key)
		if loadQuery != "" && c.src.PodKey() != "" {
			// Load sources match values by namespace and Pod name, the
			// Key of a Pod endpoint.
			c.ep.Live = b.opts.Policies.Live(loadQuery, c.ep.Key)
		}
		c.ep.Handouts = b.opts.Policies.EndpointCounter(key, c.ep.Key)
		c.ep.Weight = 1
		if w, ok := weights[c.src.PodName()]; ok {
			c.ep.Weight = weight32(w)
		} else if w, ok := weights[c.hostname]; ok {
			c.ep.Weight = weight32(w)
		}
		set.Candidates[i] = c.ep
		m := &set.members[i]
		m.src, m.alt, m.flags = c.src, c.alt, c.host
		if c.v4.IsValid() {
			m.flags |= has4
			a4.add(i, len(cands))
		}
		if c.v6.IsValid() {
			m.flags |= has6
			a6.add(i, len(cands))
		}
		// An endpoint whose name would pass 255 octets answers under the
		// Service name only: no name, SRV or PTR records of its own.
		if !fitsLen(len(c.hostname) + 1 + len(owner)) {
			continue
		}
		m.flags |= named
		// Own names and PTR records name ready endpoints only; a drain
		// step may also offer terminating ones to the Service name.
		if c.ep.Ready {
			set.hosts = append(set.hosts, int32(i))
			if primary {
				if ptrSet < 0 {
					ptrSet = len(b.snap.ptrs.sets)
					b.snap.ptrs.sets = append(b.snap.ptrs.sets, set)
				}
				for _, ip := range []netip.Addr{c.v4, c.v6} {
					if ip.IsValid() {
						b.addPTR(ip, ptrTarget{set: uint32(ptrSet), idx: uint32(i)})
					}
				}
			}
		}
		m.ports = ports.named(c.ports, owner, set)
		mports := set.ports(m)
		for k, p := range mports {
			pk := Port{Name: p.Name, Protocol: p.Protocol}
			pc := portChoices[pk]
			if pc == nil {
				pc = &Choice{Set: set, Owner: "_" + p.Name + "._" + p.Protocol + "." + owner, Qtype: dns.TypeSRV, Port: &mports[k]}
				portChoices[pk] = pc
				portOrder = append(portOrder, pc)
			}
			pc.add(i, len(cands))
		}
		if m.ports != 0 {
			all.add(i, len(cands))
		}
	}
	b.addOwnNames(set, cands, apex)
	for _, c := range append([]*Choice{a4, a6, all}, portOrder...) {
		c.In = b.shareIn(c.In, len(cands))
	}
	policy.SeedNew(set.Candidates)
	if len(a4.In) > 0 {
		n.A4 = a4
	}
	if len(a6.In) > 0 {
		n.A6 = a6
	}
	if len(all.In) > 0 {
		n.SRVs = all
	}
	for _, pc := range portOrder {
		b.node(pc.Owner, apex).SRVs = pc
	}
	if primary {
		b.snap.Stats.Endpoints += len(cands)
	}
}

// add makes candidate i (of n) answer c, once.
func (c *Choice) add(i, n int) {
	if c.In == nil {
		c.In = make([]int, 0, n)
	}
	if len(c.In) == 0 || c.In[len(c.In)-1] != i {
		c.In = append(c.In, i)
	}
}

// addOwnNames indexes the own names of set's ready named candidates for
// Lookup. A hostname that two candidates share gets a stored node with
// both their addresses instead.
func (b *builder) addOwnNames(set *EndpointSet, cands []*candidate, apex *Apex) {
	host := func(i int32) string { return cands[i].hostname }
	slices.SortStableFunc(set.hosts, func(x, y int32) int { return strings.Compare(host(x), host(y)) })
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
	set.hosts = cut(&b.hosts, len(unique))
	copy(set.hosts, unique)
	b.ownNames += len(set.hosts)
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

// shareIn returns in, or, when it holds every one of n candidates (and so
// is 0, 1, …, n-1), the builder's one such slice, read-only and shared by
// every choice of that size.
func (b *builder) shareIn(in []int, n int) []int {
	if len(in) != n {
		return in
	}
	for len(b.seq) < n {
		b.seq = append(b.seq, len(b.seq))
	}
	return b.seq[:n:n]
}
