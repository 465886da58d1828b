package zone

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
)

// Options say how a Snapshot is built. The zero value is not usable: Zones
// and Policies must be set.
type Options struct {
	// Zones are the forward zones, as lower-case FQDNs ("cluster.local.").
	// PTR records point into the first one.
	Zones []string
	// ReverseZones are the reverse zones ("in-addr.arpa.", "ip6.arpa.")
	// hdns is authoritative for; PTR records exist only inside them.
	ReverseZones []string
	// TTL of every record, in seconds.
	TTL uint32
	// EndpointPodNames names an endpoint without a hostname after its Pod
	// (when that is a valid DNS label) instead of its dashed address.
	EndpointPodNames bool
	// NSAddrs are the addresses answered for the apexes' NS target
	// ns.dns.<zone>; without them that name exists with no records.
	NSAddrs []netip.Addr
	// Policies compiles each headless Service's policy chain and keeps
	// the handout ledger across snapshots.
	Policies *policy.Compiler
	// LoadQuery is the default load query (--load-query) of Services whose
	// chain reads load; "" when no load source is configured. With it, the
	// Pod endpoints of such Services get live load cells from Policies,
	// under the Service's hdns.dev/load-query annotation or else this.
	LoadQuery string
}

const (
	soaRefresh = 7200
	soaRetry   = 1800
	soaExpire  = 86400
)

// Build makes a Snapshot of services and their slices. It does not retain
// its arguments' slices but shares the objects, which must not change.
func Build(opts *Options, serial uint32, services []*Service, slices []*EndpointSlice) *Snapshot {
	b := builder{
		opts: opts,
		snap: &Snapshot{Serial: serial, names: make(map[string]*Node)},
	}
	defer opts.Policies.Sweep()
	for _, z := range opts.Zones {
		b.addApex(z, true)
	}
	for _, z := range opts.ReverseZones {
		b.addApex(z, false)
	}
	b.snap.ptrs.ttl = opts.TTL
	slicesOf := make(map[string][]*EndpointSlice)
	for _, s := range slices {
		k := s.Namespace + "/" + s.Service
		slicesOf[k] = append(slicesOf[k], s)
	}
	// Room for every endpoint of a headless Service in every zone: no
	// candidate array grows, and the snapshot keeps no room for the
	// endpoints of other Services.
	endpoints := 0
	for _, svc := range services {
		if svc.Kind == KindHeadless {
			for _, s := range slicesOf[svc.Namespace+"/"+svc.Name] {
				endpoints += len(s.Endpoints)
			}
		}
	}
	endpoints *= len(opts.Zones)
	b.cands = make([]policy.Endpoint, 0, endpoints)
	b.members = make([]member, 0, endpoints)
	b.hosts = make([]int32, 0, endpoints)
	for _, svc := range services {
		ss := slicesOf[svc.Namespace+"/"+svc.Name]
		for _, z := range opts.Zones {
			b.addService(svc, ss, z, z == opts.Zones[0])
		}
		b.snap.Stats.Services++
	}
	b.addEmptyNonTerminals()
	b.snap.ptrs.seal()
	b.snap.Stats.Names = len(b.snap.names) + b.snap.ptrs.owners() + b.ownNames
	b.snap.Built = time.Now()
	return b.snap
}

type builder struct {
	opts     *Options
	snap     *Snapshot
	ownNames int   // endpoints' own names without a stored node
	seq      []int // 0, 1, 2, … (shareIn)
	// cands, members and hosts are the arrays that every EndpointSet's
	// are cut from: a few large allocations per snapshot instead of a
	// few small ones per Service among the build's garbage, whose memory
	// spans they would pin once it is collected.
	cands   []policy.Endpoint
	members []member
	hosts   []int32
	scratch candidateScratch
}

func (b *builder) hdr(name string, t uint16) dns.RR_Header {
	return hdrTTL(name, t, b.opts.TTL)
}

func hdrTTL(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// node returns the node for name, creating it inside apex.
func (b *builder) node(name string, apex *Apex) *Node {
	n := b.snap.names[name]
	if n == nil {
		n = &Node{Apex: apex}
		b.snap.names[name] = n
	}
	return n
}

func (b *builder) addApex(zone string, forward bool) {
	apex := &Apex{Name: zone}
	soa := &dns.SOA{
		Hdr:     b.hdr(zone, dns.TypeSOA),
		Ns:      "ns.dns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  b.snap.Serial,
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  b.opts.TTL,
	}
	if !forward && len(b.opts.Zones) > 0 {
		soa.Ns = "ns.dns." + b.opts.Zones[0]
		soa.Mbox = "hostmaster." + b.opts.Zones[0]
	}
	neg := *soa
	neg.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	apex.SOA, apex.NegativeSOA = soa, &neg
	b.snap.apexes = append(b.snap.apexes, apex)
	slices.SortStableFunc(b.snap.apexes, func(x, y *Apex) int { return cmp.Compare(len(y.Name), len(x.Name)) })

	apex.empty, apex.reverse = &Node{Apex: apex}, !forward
	n := b.node(zone, apex)
	n.others().SOA = []dns.RR{soa}
	n.others().NS = []dns.RR{&dns.NS{Hdr: b.hdr(zone, dns.TypeNS), Ns: soa.Ns}}
	if !forward {
		return
	}
	ns := b.node(soa.Ns, apex)
	for _, ip := range b.opts.NSAddrs {
		ns.addAddr(soa.Ns, ip, b.opts.TTL)
	}
	b.node("dns-version."+zone, apex).others().TXT = []dns.RR{&dns.TXT{Hdr: b.hdr("dns-version."+zone, dns.TypeTXT), Txt: []string{SpecVersion}}}
}

// addAddr appends a fixed A or AAAA record for ip.
// others returns the node's other records for the builder to fill in.
func (n *Node) others() *OtherRecords {
	if n.other == nil {
		n.other = new(OtherRecords)
	}
	return n.other
}

func (n *Node) addAddr(owner string, ip netip.Addr, ttl uint32) { n.addRR(addrRR(owner, ip, ttl)) }

// addRR adds an A or AAAA record to the node.
func (n *Node) addRR(rr dns.RR) {
	if rr.Header().Rrtype == dns.TypeA {
		n.A = append(n.A, rr)
	} else {
		n.AAAA = append(n.AAAA, rr)
	}
}

func addrRR(owner string, ip netip.Addr, ttl uint32) dns.RR {
	if ip.Is4() {
		return &dns.A{Hdr: hdrTTL(owner, dns.TypeA, ttl), A: ip.AsSlice()}
	}
	return &dns.AAAA{Hdr: hdrTTL(owner, dns.TypeAAAA, ttl), AAAA: ip.AsSlice()}
}

func (b *builder) addService(svc *Service, ss []*EndpointSlice, zone string, primary bool) {
	apex := b.snap.ApexOf(zone)
	owner := svc.Name + "." + svc.Namespace + ".svc." + zone
	if !fits(owner) {
		return
	}
	switch svc.Kind {
	case KindExternalName:
		if svc.ExternalName == "" {
			return
		}
		b.node(owner, apex).others().CNAME = &dns.CNAME{Hdr: b.hdr(owner, dns.TypeCNAME), Target: dns.Fqdn(svc.ExternalName)}
	case KindClusterIP:
		if len(svc.ClusterIPs) == 0 {
			return
		}
		n := b.node(owner, apex)
		var glue []dns.RR
		to := ptrTarget{set: fixedTarget, idx: uint32(len(b.snap.ptrs.fixed))}
		if primary {
			b.snap.ptrs.fixed = append(b.snap.ptrs.fixed, owner)
		}
		for _, ip := range svc.ClusterIPs {
			n.addAddr(owner, ip, b.opts.TTL)
			glue = append(glue, addrRR(owner, ip, b.opts.TTL))
			if primary {
				b.addPTR(ip, to)
			}
		}
		for _, p := range svc.Ports {
			if !isLabel(p.Name) || !fits("_"+p.Name+"._"+p.Protocol+"."+owner) {
				continue
			}
			srv := &dns.SRV{Hdr: b.hdr("", dns.TypeSRV), Priority: 0, Weight: 100, Port: p.Port, Target: owner}
			pn := b.node("_"+p.Name+"._"+p.Protocol+"."+owner, apex)
			srv.Hdr.Name = "_" + p.Name + "._" + p.Protocol + "." + owner
			po := pn.others()
			po.SRV, po.Extra = []dns.RR{srv}, glue
			all := *srv
			all.Hdr.Name = owner
			no := n.others()
			no.SRV, no.Extra = append(no.SRV, &all), glue
		}
	case KindHeadless:
		b.addHeadless(svc, ss, owner, apex, primary)
	}
}

// candidate is an endpoint of a headless Service while it is being built:
// the same Pod's IPv4 and IPv6 slices merge into one candidate.
type candidate struct {
	ep       policy.Endpoint
	src      *Endpoint // the first of its endpoints
	alt      *Endpoint // the one of the other family, if any
	hostname string    // the label of its own name
	host     memberFlags
	v4, v6   netip.Addr
	ports    []Port // may share its array with a slice's Ports
}

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

// fits reports whether an FQDN without escapes fits the 255 octets of a
// wire-format name.
func fits(name string) bool { return fitsLen(len(name)) }

// fitsLen is fits for a name of n characters, for callers that need not
// build the name to know.
func fitsLen(n int) bool { return n+1 <= 255 }

// candidateKeys returns each candidate's Key, which identifies it across
// replicas and snapshots: its Pod's namespace/name (the source's string),
// else its first address.
func candidateKeys(cands []*candidate) []string {
	keys := packed(cands, func(c *candidate, b []byte) []byte {
		switch {
		case c.src.PodKey() != "":
			return b
		case c.v4.IsValid():
			return c.v4.AppendTo(b)
		default:
			return c.v6.AppendTo(b)
		}
	})
	for i, c := range cands {
		if c.src.PodKey() != "" {
			keys[i] = c.src.PodKey()
		}
	}
	return keys
}

// packed returns the strings that write appends for each candidate, cut
// from one string: one allocation per Service where there were one per
// endpoint, and one block of memory that the snapshot's lifetime alone
// decides, not scattered among the build's garbage.
func packed(cands []*candidate, write func(c *candidate, b []byte) []byte) []string {
	var b []byte
	ends := make([]int, len(cands))
	for i, c := range cands {
		b = write(c, b)
		ends[i] = len(b)
	}
	all := string(b)
	out := make([]string, len(cands))
	start := 0
	for i, end := range ends {
		out[i], start = all[start:end], end
	}
	return out
}

// weight32 is a weight from the annotation as policy.Endpoint holds it: a
// positive weight stays positive and finite.
func weight32(w float64) float32 {
	if w <= 0 {
		return 0
	}
	return float32(min(max(w, math.SmallestNonzeroFloat32), math.MaxFloat32))
}

// parseWeights reads the hdns.dev/weights annotation: "name=weight, ...".
func parseWeights(s string) (map[string]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	w := make(map[string]float64)
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if !ok || err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%s %q: want name=weight pairs with weights ≥ 0, got %q", AnnotationWeights, s, part)
		}
		w[strings.TrimSpace(name)] = f
	}
	return w, nil
}

// candidateScratch is what headlessCandidates reuses from one Service to
// the next. A build's temporary data, allocated afresh per Service, would
// scatter among the snapshot's and leave its memory spans part-used once
// collected.
type candidateScratch struct {
	slices []*EndpointSlice
	cands  []candidate
	ptrs   []*candidate
	byKey  map[candidateKey]int // index into cands
	seen   map[netip.Addr]bool
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
	if sc.byKey == nil {
		sc.byKey, sc.seen = make(map[candidateKey]int), make(map[netip.Addr]bool)
	}
	clear(sc.byKey)
	clear(sc.seen)
	sc.slices = append(sc.slices[:0], ss...)
	slices.SortFunc(sc.slices, func(x, y *EndpointSlice) int { return strings.Compare(x.Name, y.Name) })
	sc.cands = sc.cands[:0]
	for _, s := range sc.slices {
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			usable := e.Ready || offerTerminating && e.Serving && e.Terminating
			ip := e.Address()
			if !usable || !ip.IsValid() {
				continue
			}
			if sc.seen[ip] || (s.AddressType == "IPv4") != ip.Is4() {
				continue
			}
			sc.seen[ip] = true
			var key candidateKey
			switch {
			case e.PodKey() != "":
				key = candidateKey{pod: true, name: e.PodKey()}
			case e.Hostname() != "":
				key = candidateKey{name: e.Hostname()}
			}
			k, ok := sc.byKey[key]
			if !ok || key.name == "" || (ip.Is4() && sc.cands[k].v4.IsValid()) || (ip.Is6() && sc.cands[k].v6.IsValid()) {
				k = len(sc.cands)
				sc.cands = append(sc.cands, candidate{src: e, hostname: e.Hostname(), ep: policy.Endpoint{
					Ready: e.Ready, Serving: e.Serving, Terminating: e.Terminating,
				}})
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
		c := &sc.cands[i]
		switch {
		case isLabel(c.hostname):
			c.host = hostFromHostname
		case podNames && isLabel(strings.ToLower(c.src.PodName())):
			c.hostname, c.host = strings.ToLower(c.src.PodName()), hostFromPod
		case c.v4.IsValid():
			c.hostname, c.host = dashed(c.v4), hostFrom4
		default:
			c.hostname, c.host = dashed(c.v6), hostFrom6
		}
		sc.ptrs = append(sc.ptrs, c)
	}
	return sc.ptrs
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

// dashed is the label the spec gives an endpoint without a hostname:
// 10.0.0.1 → 10-0-0-1, fd00::1 → fd00--1.
func dashed(ip netip.Addr) string { return string(appendDashed(nil, ip)) }

// addPTR adds a PTR record from ip's reverse name to to when the reverse
// name is inside one of the reverse zones.
func (b *builder) addPTR(ip netip.Addr, to ptrTarget) {
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return
	}
	apex := findApex(b.snap.apexes, rev)
	if apex == nil || !slices.Contains(b.opts.ReverseZones, apex.Name) {
		return
	}
	if rev != apex.Name {
		b.snap.ptrs.add(ip, to)
		return
	}
	// The zone is one address's reverse name: its PTRs are the apex's.
	var buf RRBuf
	target := strings.Clone(b.snap.ptrs.name(to, &buf))
	n := b.node(rev, apex)
	for _, rr := range n.PTR {
		if rr.(*dns.PTR).Ptr == target {
			return
		}
	}
	n.PTR = append(n.PTR, &dns.PTR{Hdr: b.hdr(rev, dns.TypePTR), Ptr: target})
}

// addEmptyNonTerminals makes every ancestor of a name, up to its apex, exist
// (RFC 8020: a name with names below it is NODATA, never NXDOMAIN).
func (b *builder) addEmptyNonTerminals() {
	var missing []string
	for name, n := range b.snap.names {
		for p := parent(name); p != "" && InZone(p, n.Apex.Name); p = parent(p) {
			if _, ok := b.snap.names[p]; ok {
				break
			}
			missing = append(missing, p)
		}
	}
	for _, p := range missing {
		if _, ok := b.snap.names[p]; !ok {
			b.snap.names[p] = b.snap.ApexOf(p).empty
		}
	}
}

// parent strips the first label of an FQDN; "" for the root.
func parent(name string) string {
	if name == "." {
		return ""
	}
	_, rest, ok := strings.Cut(name, ".")
	if !ok || rest == "" {
		return "."
	}
	return rest
}

// isLabel reports whether s is a valid lower-case DNS label (RFC 1123).
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// CanonicalZone lower-cases a zone name and makes it fully qualified. It
// rejects names that are not valid domain names, and the root.
func CanonicalZone(z string) (string, error) {
	z = dns.Fqdn(strings.ToLower(strings.TrimSpace(z)))
	if _, ok := dns.IsDomainName(z); !ok || strings.Contains(z, "\\") {
		return "", fmt.Errorf("zone %q is not a valid domain name", z)
	}
	if z == "." {
		return "", fmt.Errorf("zone %q: hdns cannot be authoritative for the root", z)
	}
	return z, nil
}
