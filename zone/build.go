package zone

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

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
	// Policies compiles each headless Service's policy annotations and
	// binds its endpoints (weights, ledger, live load, counters); it keeps
	// their state across snapshots. Build asks it once per headless
	// Service and zone; the Publisher sweeps it after each build.
	Policies *policy.Compiler
}

const (
	soaRefresh = 7200
	soaRetry   = 1800
	soaExpire  = 86400
)

// Build makes a Snapshot of services and their slices. It does not retain
// its arguments' slices but shares the objects, which must not change.
// Its only effect beyond the Snapshot is on opts.Policies, which hands out
// the policy state of the Snapshot's endpoints; the caller sweeps what no
// build asked for since (policy.Compiler.Sweep), as Publisher does.
func Build(opts *Options, serial uint32, services []*Service, slices []*EndpointSlice) *Snapshot {
	snap, _ := buildFull(opts, serial, services, slices)
	return snap
}

type builder struct {
	opts   *Options
	serial uint32
	apexes []*Apex // longest name first
	// names are the nodes of the shard, or of the apexes, being built.
	names map[string]*Node
	sh    *shard // the shard being built
	// prev are the bound endpoints of the shard sh replaces (shard.bound).
	prev []policy.Endpoint
	// cands, members and hosts are the arrays that the shard's
	// EndpointSets (one per zone) are cut from: three allocations per
	// Service, sized for it.
	cands   []policy.Endpoint
	members []member
	hosts   []int32
	scratch candidateScratch
	// reverse are the reverse zones' prefixes when reverseExact: then a
	// PTR record of an address is a shard's exactly when one contains the
	// address (addPTR), without spelling its reverse name.
	reverse      []netip.Prefix
	reverseExact bool
}

// newBuilder returns a builder of a snapshot of serial, with its apexes.
func newBuilder(opts *Options, serial uint32) *builder {
	b := &builder{opts: opts, serial: serial, names: make(map[string]*Node)}
	for _, z := range opts.Zones {
		b.addApex(z, true)
	}
	for _, z := range opts.ReverseZones {
		b.addApex(z, false)
	}
	slices.SortStableFunc(b.apexes, func(x, y *Apex) int { return cmp.Compare(len(y.Name), len(x.Name)) })
	for i, a := range b.apexes {
		a.index = i
	}
	b.reverse, b.reverseExact = reversePrefixes(opts)
	return b
}

// reversePrefixes returns the prefixes of opts's reverse zones, and
// whether they decide alone which addresses have PTR records in a
// shard: when no zone nests in another, at most one apex holds an
// address's reverse name, and no reverse zone is one address's name; so
// that a reverse zone holds the name exactly when its prefix holds the
// address. A reverse zone that is no prefix's name ("arpa.") makes it
// false.
func reversePrefixes(opts *Options) ([]netip.Prefix, bool) {
	if zonesNest(opts) {
		return nil, false
	}
	out := make([]netip.Prefix, 0, len(opts.ReverseZones))
	for _, z := range opts.ReverseZones {
		p, ok := parseReverse(z)
		if !ok {
			return nil, false
		}
		out = append(out, p)
	}
	return out, true
}

// reserve makes room in the arenas for every endpoint of svc, when
// headless, in every zone: no candidate array grows, and the shard keeps
// no room for the endpoints of other Services. Arenas are per Service, so
// that a Service's rebuild frees its old arrays, which no other shard
// shares.
func (b *builder) reserve(svc *Service, ss []*EndpointSlice) {
	endpoints := 0
	if svc.Kind == KindHeadless {
		for _, s := range ss {
			endpoints += len(s.Endpoints)
		}
	}
	endpoints *= len(b.opts.Zones)
	b.cands = make([]policy.Endpoint, 0, endpoints)
	b.members = make([]member, 0, endpoints)
	b.hosts = make([]int32, 0, endpoints)
}

func (b *builder) hdr(name string, t uint16) dns.RR_Header {
	return hdrTTL(name, t, b.opts.TTL)
}

func hdrTTL(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// node returns the node for name, creating it inside apex.
func (b *builder) node(name string, apex *Apex) *Node {
	n := b.names[name]
	if n == nil {
		n = &Node{Apex: apex}
		b.names[name] = n
	}
	return n
}

func (b *builder) addApex(zone string, forward bool) {
	apex := &Apex{Name: zone}
	soa := &dns.SOA{
		Hdr:     b.hdr(zone, dns.TypeSOA),
		Ns:      "ns.dns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  b.serial,
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
	b.apexes = append(b.apexes, apex)

	apex.empty, apex.reverse = &Node{Apex: apex}, !forward
	n := b.node(zone, apex)
	rare := n.mutableRare()
	rare.SOA = []dns.RR{soa}
	rare.NS = []dns.RR{&dns.NS{Hdr: b.hdr(zone, dns.TypeNS), Ns: soa.Ns}}
	for _, ip := range b.opts.NSAddrs {
		rare.Extra = append(rare.Extra, addrRR(soa.Ns, ip, b.opts.TTL))
	}
	if !forward {
		return
	}
	ns := b.node(soa.Ns, apex)
	for _, rr := range rare.Extra {
		ns.addRR(rr)
	}
	b.node("dns-version."+zone, apex).mutableRare().TXT = []dns.RR{&dns.TXT{Hdr: b.hdr("dns-version."+zone, dns.TypeTXT), Txt: []string{SpecVersion}}}
}

// mutableRare returns the node's rare records for the builder to fill in.
func (n *Node) mutableRare() *RareRecords {
	if n.rare == nil {
		n.rare = new(RareRecords)
	}
	return n.rare
}

// addAddr appends a fixed A or AAAA record for ip.
func (n *Node) addAddr(owner string, ip netip.Addr, ttl uint32) { n.addRR(addrRR(owner, ip, ttl)) }

// addRR adds an A or AAAA record to the node.
func (n *Node) addRR(rr dns.RR) {
	if rr.Header().Rrtype == dns.TypeA {
		n.FixedA = append(n.FixedA, rr)
	} else {
		n.FixedAAAA = append(n.FixedAAAA, rr)
	}
}

func addrRR(owner string, ip netip.Addr, ttl uint32) dns.RR {
	if ip.Is4() {
		return &dns.A{Hdr: hdrTTL(owner, dns.TypeA, ttl), A: ip.AsSlice()}
	}
	return &dns.AAAA{Hdr: hdrTTL(owner, dns.TypeAAAA, ttl), AAAA: ip.AsSlice()}
}

func (b *builder) addService(svc *Service, ss []*EndpointSlice, zone string, primary bool) {
	apex := findApex(b.apexes, zone)
	owner := svc.Name + "." + svc.Namespace + ".svc." + zone
	if !fits(owner) {
		return
	}
	switch svc.Kind {
	case KindExternalName:
		if svc.ExternalName == "" {
			return
		}
		b.node(owner, apex).mutableRare().CNAME = &dns.CNAME{Hdr: b.hdr(owner, dns.TypeCNAME), Target: dns.Fqdn(svc.ExternalName)}
	case KindClusterIP:
		if len(svc.ClusterIPs) == 0 {
			return
		}
		n := b.node(owner, apex)
		var glue []dns.RR
		for _, ip := range svc.ClusterIPs {
			n.addAddr(owner, ip, b.opts.TTL)
			glue = append(glue, addrRR(owner, ip, b.opts.TTL))
			if primary {
				b.addPTR(ip, ptrTarget{set: b.ptrNames(svc.Namespace, svc.Name, owner), idx: fixedTarget})
			}
		}
		for _, p := range svc.Ports {
			if !isLabel(p.Name) || !fits("_"+p.Name+"._"+p.Protocol+"."+owner) {
				continue
			}
			srv := &dns.SRV{Hdr: b.hdr("", dns.TypeSRV), Priority: 0, Weight: 100, Port: p.Port, Target: owner}
			pn := b.node("_"+p.Name+"._"+p.Protocol+"."+owner, apex)
			srv.Hdr.Name = "_" + p.Name + "._" + p.Protocol + "." + owner
			po := pn.mutableRare()
			po.SRV, po.Extra = []dns.RR{srv}, glue
			all := *srv
			all.Hdr.Name = owner
			no := n.mutableRare()
			no.SRV, no.Extra = append(no.SRV, &all), glue
		}
	case KindHeadless:
		b.addHeadless(svc, ss, owner, apex, primary)
	}
}

// addPTR adds a PTR record from ip's reverse name to to when the reverse
// name is inside one of the reverse zones.
func (b *builder) addPTR(ip netip.Addr, to ptrTarget) {
	if b.reverseExact && !ip.Is4In6() && ip.Zone() == "" {
		for _, p := range b.reverse {
			if p.Contains(ip) {
				b.scratch.ptrRecs.add(ip, to)
				return
			}
		}
		return
	}
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return
	}
	apex := findApex(b.apexes, rev)
	if apex == nil || !slices.Contains(b.opts.ReverseZones, apex.Name) {
		return
	}
	if rev != apex.Name {
		b.scratch.ptrRecs.add(ip, to)
		return
	}
	// The zone is one address's reverse name: its PTRs are the apex's.
	var buf RRBuf
	target := strings.Clone(to.name(ip, &buf))
	n := b.node(rev, apex)
	for _, rr := range n.PTR {
		if rr.(*dns.PTR).Ptr == target {
			return
		}
	}
	n.PTR = append(n.PTR, &dns.PTR{Hdr: b.hdr(rev, dns.TypePTR), Ptr: target})
}
