// Package zone turns Kubernetes Services and EndpointSlices into an immutable
// Snapshot of DNS records, following the Kubernetes DNS-Based Service
// Discovery specification v1.1.0.
//
// Sources (packages source/kube and source/manifests) hand typed changes of
// small structs to a Publisher through the Sink interface; the Publisher
// keeps the objects, and its single builder goroutine coalesces changes and
// publishes a new Snapshot with an atomic pointer swap. Readers never lock: a
// Snapshot and everything reachable from it is never modified after it is
// built. A batch of changes rebuilds only the Services it touches: the new
// Snapshot shares the others' nodes, EndpointSets and PTR records with the
// previous one, through a persistent name table and PTR index (nameTable,
// ptrSeq); the first sync and relists build every Service.
//
// The package owns the sources' shrunk objects, the names and records of
// the specification, and the lists of candidates each question chooses
// among. It does not choose: for each headless Service it asks the policy
// Compiler once (CompileService, then Bind with its endpoints' identities)
// and stores the Chain and endpoints it gets back; it never reads
// annotations' policy meaning, weights or load. It must not import server
// (which reads Snapshots), loadsource, the sources, or client-go: it knows
// the API's types (k8s.io/api) only to shrink them.
package zone

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
)

// SpecVersion is the version of the Kubernetes DNS specification served in
// the dns-version TXT record.
const SpecVersion = "1.1.0"

// Snapshot is an immutable view of every name hdns answers for.
type Snapshot struct {
	// Serial is the SOA serial of every apex in this Snapshot.
	Serial uint32
	// Built is when Build returned.
	Built time.Time
	// Stats counts what the Snapshot holds.
	Stats Stats
	// PolicyErrors lists the Services whose policy annotations were
	// rejected; they are served with the default policy.
	PolicyErrors []PolicyError

	apexes []*Apex    // longest name first
	names  *nameTable // lower-case FQDN → stored node
	ptrs   ptrIndex   // the PTR records below reverse apexes
}

// Stats counts the objects a Snapshot was built from and the names it holds.
type Stats struct {
	Services, Endpoints, Names int
}

// PolicyError says why a Service's policy annotations were rejected.
type PolicyError struct {
	Service string // namespace/name
	Err     error
}

// Apex is the top of one zone hdns is authoritative for.
type Apex struct {
	Name string // lower-case FQDN
	// SOA is the zone's SOA record, answered at the apex.
	SOA dns.RR
	// NegativeSOA is the SOA record for the authority section of NXDOMAIN
	// and NODATA answers: its TTL is min(SOA TTL, MINIMUM) (RFC 2308).
	NegativeSOA dns.RR

	// empty is the one node of all the zone's empty non-terminals below
	// its apex: they hold nothing, so they share it.
	empty *Node
	// reverse is set for the reverse zones, whose names below the apex
	// the PTR index answers for.
	reverse bool
	// index is the apex's place in its Snapshot's apexes, the same in
	// every Snapshot of one Options.
	index int
}

// Node holds the records of one owner name. A Node with no records is an
// empty non-terminal: it exists (NODATA), because names exist below it.
//
// Fixed records are answered as they are. Chosen records are answered with
// the endpoints a policy picks for each query.
//
// Stored Nodes come per Service, not per endpoint: Services, their
// ports, the apexes. An endpoint's own name and an address's reverse name have none;
// Lookup makes their Node when asked, from the EndpointSet's members and
// from the Snapshot's PTR index. Records only a few names have wait behind
// Rare.
type Node struct {
	// Apex is the zone the node is in. Snapshots share the nodes of the
	// Services no change touched, so that this Apex may be an earlier
	// Snapshot's, with an earlier serial: answers take the apex Lookup
	// returns.
	Apex *Apex

	// FixedA, FixedAAAA and PTR are answered as they are: a ClusterIP
	// Service's addresses, an endpoint's own name, a reverse name.
	FixedA, FixedAAAA, PTR []dns.RR

	// ChosenA, ChosenAAAA and ChosenSRV are the per-query choices of a
	// headless Service: its policy picks their records for each query.
	ChosenA, ChosenAAAA, ChosenSRV *Choice

	rare *RareRecords
}

// RareRecords are the records only a few names have, kept out of Node so
// that the many Nodes without them do not pay for their fields.
type RareRecords struct {
	SRV, TXT, NS, SOA []dns.RR
	// Extra holds the addresses of the targets of SRV, or at an apex of
	// NS (as CoreDNS gives them), for the additional section.
	Extra []dns.RR
	// CNAME, when set, is the only record of the node; it answers every
	// query type.
	CNAME *dns.CNAME
}

var noRareRecords RareRecords

// Rare returns the node's rare records; never nil, and never to be
// modified.
func (n *Node) Rare() *RareRecords {
	if n.rare == nil {
		return &noRareRecords
	}
	return n.rare
}

// CNAME is the node's CNAME record, or nil.
func (n *Node) CNAME() *dns.CNAME { return n.Rare().CNAME }

// EndpointSet holds the candidates of one headless Service, in the spec's
// stable order, and the policy that chooses among them.
//
// The records of its answers and of its endpoints' own names are not
// stored: a Choice makes them when it answers (AppendRRs, AppendGlue), from
// one compact member per candidate, so that an endpoint costs the snapshot
// its candidate, its member and its PTR records. Even the own names are
// spelled when asked, from the endpoint's hostname, Pod name or address.
type EndpointSet struct {
	Namespace, Service string
	Policy             *policy.Chain
	// PolicyErr says why the Service's own policy annotations were
	// rejected (Policy is then the default); nil when they were accepted.
	PolicyErr error
	// TTL of the Service's records.
	TTL        uint32
	Candidates []policy.Endpoint

	owner   string   // the Service's name
	members []member // parallel to Candidates
	// portSets are the candidates' lists of ports with SRV records;
	// members index them, 0 standing for none.
	portSets [][]Port
	// hosts indexes the candidates whose own name answers (named and
	// ready, hostname held by no other candidate), sorted by hostname.
	hosts     []int32
	srvWeight uint16 // the weight of every SRV record
}

// member is what the answers of one candidate are made from: the
// EndpointSlice endpoints it merges, which hold its addresses, and how its
// own name is spelled. Names and records are made when asked (RRBuf), so
// that a member is 24 bytes and the snapshot holds no string per endpoint.
// It is apart from its policy.Endpoint (Candidates[i]) because each side
// reads only its own: steps never make records, and making records needs
// none of the policy's state.
type member struct {
	// src is the first EndpointSlice endpoint the candidate was made
	// from, shared with the source: its Pod, node, zone and, unless alt
	// holds it, its address.
	src *Endpoint
	// alt, for a dual-stack Pod whose families come in two slices, is
	// the endpoint of the family src lacks; nil otherwise.
	alt   *Endpoint
	ports uint16 // index into portSets
	flags memberFlags
}

type memberFlags uint8

const (
	has4 memberFlags = 1 << iota
	has6
	// named: the own name, hostname.owner, fits in 255 octets. Without
	// it the candidate answers only under the Service name.
	named
	// The own name's first label is spelled from one of these.
	hostFromHostname memberFlags = 0 << 3
	hostFromPod      memberFlags = 1 << 3
	hostFrom4        memberFlags = 2 << 3
	hostFrom6        memberFlags = 3 << 3
	hostFrom         memberFlags = 3 << 3 // the mask
	// repeatsSRV: the candidate's SRV records may equal others of the same
	// answer, its own or those of a candidate of the same own name.
	repeatsSRV memberFlags = 1 << 5
)

// ip returns the 4 or 16 bytes of the candidate's address of one family,
// nil when it has none; they are its endpoint's and must not be modified.
func (m *member) ip(v6 bool) []byte {
	if (m.src.family == 6) == v6 {
		return m.src.ip()
	}
	if m.alt != nil {
		return m.alt.ip()
	}
	return nil
}

// addr is ip as a netip.Addr.
func (m *member) addr(v6 bool) netip.Addr {
	a, _ := netip.AddrFromSlice(m.ip(v6))
	return a
}

// Choice is one question that a policy answers: which candidates, among In,
// and in which order. Its records are made for each answer (AppendRRs).
type Choice struct {
	Set *EndpointSet
	// Owner is the owner name of the choice's answer records.
	Owner string
	In    []int
	// Qtype is what the choice answers: A, AAAA or SRV records.
	Qtype uint16
	// Port, for the SRV choice of one port's own name, is that port (its
	// Name and Protocol count, not its number); nil for the Service
	// name's SRV choice, which answers every port.
	Port *Port
}

// Glue reports whether answers carry their targets' addresses in the
// additional section (SRV choices).
func (c *Choice) Glue() bool { return c.Qtype == dns.TypeSRV }

// Lookup finds the node for a lower-case FQDN. It returns the apex of the
// zone the name is in (nil when hdns is not authoritative for it) and the
// node (nil when the name does not exist in that zone).
//
// The nodes of endpoints' own names and of reverse names are made for the
// call (see LookupInto); like every node, they must not be modified.
func (s *Snapshot) Lookup(name string) (*Apex, *Node) {
	return s.LookupInto(name, new(RRBuf))
}

// LookupInto is Lookup with the nodes it makes, and their records, made in
// buf: they are valid until buf is used again.
func (s *Snapshot) LookupInto(name string, buf *RRBuf) (*Apex, *Node) {
	if n := s.names.get(name); n != nil {
		return s.apexes[n.Apex.index], n
	}
	if label, parent, ok := strings.Cut(name, "."); ok {
		if svc := s.names.get(parent); svc != nil {
			if set := svc.endpointSet(); set != nil {
				if i, ok := set.host(label); ok {
					apex := s.apexes[svc.Apex.index]
					return apex, buf.ownNode(apex, set, i, name)
				}
			}
		}
	}
	apex := s.ApexOf(name)
	if apex != nil && apex.reverse {
		return apex, s.ptrs.lookup(name, apex, buf)
	}
	return apex, nil
}

// ApexOf returns the apex of the most specific zone that contains name, or
// nil.
func (s *Snapshot) ApexOf(name string) *Apex {
	return findApex(s.apexes, name)
}

func findApex(apexes []*Apex, name string) *Apex {
	for _, a := range apexes {
		if InZone(name, a.Name) {
			return a
		}
	}
	return nil
}

// InZone reports whether the lower-case FQDN name (in presentation form)
// is zone or below it. A dot escaped with a backslash is part of a label,
// not a boundary.
func InZone(name, zone string) bool {
	if zone == "." {
		return true
	}
	if !strings.HasSuffix(name, zone) {
		return false
	}
	if len(name) == len(zone) {
		return true
	}
	dot := len(name) - len(zone) - 1
	if name[dot] != '.' {
		return false
	}
	escapes := 0
	for i := dot - 1; i >= 0 && name[i] == '\\'; i-- {
		escapes++
	}
	return escapes%2 == 0
}
