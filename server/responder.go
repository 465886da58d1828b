// Package server is hdns's wire: the UDP and TCP listeners, the responder
// that turns a query and the current zone snapshot into a reply by the RFCs,
// and the HTTP side (metrics, health, readiness).
package server

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/zone"
)

const (
	// maxUDPSize caps UDP replies whatever the client's EDNS buffer says,
	// to stay clear of IP fragmentation (DNS Flag Day 2020, RFC 9715).
	maxUDPSize = 1232
	// maxCNAMEChain bounds how many in-zone CNAMEs one answer follows.
	maxCNAMEChain = 8
	headerLen     = 12
)

// SnapshotFunc returns the current zone snapshot, or nil before the first
// one. It must not block.
type SnapshotFunc func() *zone.Snapshot

// Responder answers queries from the current snapshot. It is safe for
// concurrent use; each serving goroutine passes its own Scratch.
type Responder struct {
	// Snapshot supplies the zone.
	Snapshot SnapshotFunc
	// Zones are the apexes hdns is authoritative for (lower-case FQDNs).
	// Before the first snapshot, names inside them get SERVFAIL and all
	// others REFUSED.
	Zones []string
	// Metrics, when set, counts every reply.
	Metrics *Metrics
	// Forward, when set, resolves names outside the zones for clients
	// whose source address is in ForwardAllow; everyone else gets REFUSED.
	Forward      *Forwarder
	ForwardAllow []netip.Prefix
	// PodRecords answers <dashed-ip>.<namespace>.pod.<zone> with that
	// address, as CoreDNS's "pods insecure" does: without checking that
	// such a Pod exists.
	PodRecords bool
}

// Scratch is per-goroutine state reused across queries to avoid
// allocation. It must not be shared between goroutines.
type Scratch struct {
	req, resp dns.Msg
	opt       dns.OPT
	hasOpt    bool // the query had EDNS: the reply carries opt
	ecs       dns.EDNS0_SUBNET
	// usedClient is set when the answer depended on who asked.
	usedClient bool
	// explain, when set, asks for a trace of the choice instead of a
	// recorded handout.
	explain *Explanation
	// forward is set by Respond when the query must go upstream: Respond
	// then returns nil and the server calls Forwarded off its read loop.
	forward bool
	// outOfZone is set by answer for an IN question outside every zone.
	outOfZone bool
	picked    []int
	preq      policy.Request
	policy    policy.Scratch
	answer    []dns.RR
	extra     []dns.RR
	// rrs holds the records the snapshot makes for this query's answer.
	rrs  zone.RRBuf
	buf  []byte
	fast fastState
	// slowOnly turns the fast path off (for tests comparing the two);
	// fastHit is set when the fast path answered.
	slowOnly, fastHit bool
}

// Respond answers the query in pkt from client and returns the reply bytes,
// or nil when the packet gets no reply (it is too short to carry an ID, or
// it is itself a response). Over UDP the reply fits the client's EDNS
// buffer (512 bytes without EDNS, at most 1232); over TCP, 65535 bytes.
// The result aliases s and is valid until s is used again.
func (r *Responder) Respond(pkt []byte, client netip.Addr, tcp bool, s *Scratch) []byte {
	var start time.Time
	if r.Metrics != nil {
		start = time.Now()
	}
	if len(pkt) < headerLen || pkt[2]&0x80 != 0 {
		if r.Metrics != nil {
			r.Metrics.dropped.Inc()
		}
		return nil
	}
	// The common queries take the fast path (fast.go), which writes the
	// same bytes as the rest of this function without dns.Msg.
	s.forward, s.outOfZone, s.fastHit = false, false, false
	s.rrs.Reset()
	if s.explain == nil && !s.slowOnly {
		if out, ok := r.respondFast(pkt, client, tcp, s, start); ok {
			s.fastHit = true
			return out
		}
	}
	req, m := &s.req, &s.resp
	resetMsg(m)
	s.rrs.Reset()
	s.forward, s.outOfZone = false, false
	source := client
	qtype := uint16(0)
	limit := 512
	if tcp {
		limit = dns.MaxMsgSize
	}

	if err := req.Unpack(pkt); err != nil {
		// The header is all we trust: reply with a fresh one.
		m.Id = binary.BigEndian.Uint16(pkt)
		m.Response = true
		m.Opcode = int(pkt[2]>>3) & 0xF
		m.Rcode = dns.RcodeFormatError
		return r.finish(m, s, limit, qtype, start)
	}
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode

	// EDNS (RFC 6891) first, so that every reply to an EDNS query carries
	// an OPT: one OPT at most; echo version 0 with our buffer size and the
	// DO bit; unknown options are ignored.
	var reqOpt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if reqOpt != nil {
				m.Rcode = dns.RcodeFormatError
				return r.finish(m, s, limit, qtype, start)
			}
			reqOpt = o
		}
	}
	var ecs *dns.EDNS0_SUBNET
	s.hasOpt = reqOpt != nil
	if reqOpt != nil {
		s.opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: s.opt.Option[:0]}
		s.opt.SetUDPSize(maxUDPSize)
		s.opt.SetDo(reqOpt.Do())
		if !tcp {
			limit = min(max(int(reqOpt.UDPSize()), 512), maxUDPSize)
		}
		if reqOpt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return r.finishEDNS(m, s, limit, qtype, start)
		}
		for _, o := range reqOpt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				ecs = e
			}
		}
	}
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return r.finishEDNS(m, s, limit, qtype, start)
	}
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	m.Question = req.Question
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return r.finishEDNS(m, s, limit, qtype, start)
	}
	q := req.Question[0]
	qtype = q.Qtype
	if ecs != nil {
		addr, ok := clientSubnet(ecs)
		if !ok {
			// RFC 7871 7.1.1: a malformed option is a format error.
			m.Rcode = dns.RcodeFormatError
			return r.finishEDNS(m, s, limit, qtype, start)
		}
		// A /0 subnet names nobody: the asker stays the client.
		if ecs.SourceNetmask > 0 {
			client = addr
		}
	}

	s.usedClient = false
	r.answer(m, s, &q, client)
	if s.outOfZone && r.forwards(source) {
		s.forward = true
		return nil
	}
	if ecs != nil {
		// RFC 7871 7.2.1: echo family, address and source prefix; the
		// scope covers the source prefix when the answer depended on the
		// client, else 0 (valid for everyone).
		s.ecs = *ecs
		s.ecs.SourceScope = 0
		if s.usedClient {
			s.ecs.SourceScope = ecs.SourceNetmask
		}
		s.opt.Option = append(s.opt.Option, &s.ecs)
	}
	return r.finishEDNS(m, s, limit, qtype, start)
}

// forwards reports whether queries of client outside the zones go upstream.
func (r *Responder) forwards(client netip.Addr) bool {
	if r.Forward == nil {
		return false
	}
	for _, p := range r.ForwardAllow {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// Forwarded resolves upstream the query in pkt (which Respond marked for
// forwarding) and returns the reply: the upstream's answer under the
// client's ID, question and EDNS, with RA set and AA cleared, cut to the
// transport's limit; SERVFAIL when no upstream answered. It blocks for up
// to the upstreams' timeouts; it allocates its own buffers.
func (r *Responder) Forwarded(ctx context.Context, pkt []byte, tcp bool) []byte {
	start := time.Now()
	var req dns.Msg
	if err := req.Unpack(pkt); err != nil || len(req.Question) != 1 {
		return nil // Respond accepted it: cannot happen
	}
	up, err := r.Forward.Exchange(ctx, &req)
	m := new(dns.Msg)
	if err == nil {
		*m = *up
		m.Extra = slices.DeleteFunc(slices.Clone(m.Extra), func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
	} else {
		m.Rcode = dns.RcodeServerFailure
	}
	m.Id, m.Response, m.Opcode = req.Id, true, req.Opcode
	m.Question = req.Question
	m.RecursionDesired, m.CheckingDisabled = req.RecursionDesired, req.CheckingDisabled
	m.RecursionAvailable, m.Authoritative, m.Truncated = true, false, false
	m.Compress = true
	limit := dns.MaxMsgSize
	if !tcp {
		limit = 512
	}
	if o := req.IsEdns0(); o != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(maxUDPSize)
		opt.SetDo(o.Do())
		m.Extra = append(m.Extra, opt)
		if !tcp {
			limit = min(max(int(o.UDPSize()), 512), maxUDPSize)
		}
	}
	out, err := m.Pack()
	if err == nil && len(out) > limit {
		out, err = truncate(out, limit)
	}
	if err != nil {
		return nil
	}
	if r.Metrics != nil {
		r.Metrics.count(req.Question[0].Qtype, m.Rcode, time.Since(start).Seconds())
	}
	return out
}

// finishEDNS adds the reply's OPT record when the query had one, then
// finishes.
func (r *Responder) finishEDNS(m *dns.Msg, s *Scratch, limit int, qtype uint16, start time.Time) []byte {
	if s.hasOpt {
		m.Extra = append(m.Extra, &s.opt)
	}
	return r.finish(m, s, limit, qtype, start)
}

// clientSubnet returns the client address an EDNS Client Subnet option
// names, masked to its source prefix; false when the option is malformed.
func clientSubnet(e *dns.EDNS0_SUBNET) (netip.Addr, bool) {
	var bits int
	switch e.Family {
	case 1:
		bits = 32
	case 2:
		bits = 128
	default:
		return netip.Addr{}, false
	}
	if int(e.SourceNetmask) > bits || e.SourceScope != 0 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(e.Address)
	if !ok {
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if a.BitLen() != bits {
		return netip.Addr{}, false
	}
	p, err := a.Prefix(int(e.SourceNetmask))
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

// resetMsg empties m for the next reply, keeping its sections' arrays. It
// clears them first: records made in a zone.RRBuf point into the snapshot
// they came from, which a record left behind would keep alive.
func resetMsg(m *dns.Msg) {
	clear(m.Answer)
	clear(m.Ns)
	clear(m.Extra)
	answer, ns, extra := m.Answer[:0], m.Ns[:0], m.Extra[:0]
	*m = dns.Msg{Compress: true}
	m.Answer, m.Ns, m.Extra = answer, ns, extra
}

// answer fills m for one question of class IN.
func (r *Responder) answer(m *dns.Msg, s *Scratch, q *dns.Question, client netip.Addr) {
	name := lower(q.Name)
	snap := r.Snapshot()
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return
	}
	if snap == nil {
		m.Rcode = dns.RcodeRefused
		s.outOfZone = true
		for _, z := range r.Zones {
			if zone.InZone(name, z) {
				m.Rcode = dns.RcodeServerFailure
				s.outOfZone = false
			}
		}
		return
	}
	apex, node := snap.LookupInto(name, &s.rrs)
	if apex == nil {
		m.Rcode = dns.RcodeRefused
		s.outOfZone = true
		return
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		// The zone is the cluster's to list, not the network's.
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	if node == nil && r.PodRecords {
		if r.podRecord(m, name, q.Qtype, apex) {
			return
		}
	}
	for hops := 0; ; hops++ {
		if node == nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, apex.NegativeSOA)
			return
		}
		if node.CNAME() == nil || q.Qtype == dns.TypeCNAME {
			break
		}
		// A CNAME answers every type (RFC 1034 3.6.2); follow it while it
		// stays inside hdns's zones, and let the resolver do the rest.
		m.Answer = append(m.Answer, node.CNAME())
		if q.Qtype == dns.TypeANY || hops == maxCNAMEChain {
			return
		}
		target := node.CNAME().Target
		apex, node = snap.LookupInto(target, &s.rrs)
		if apex == nil {
			return
		}
	}
	before := len(m.Answer)
	r.records(m, s, node, q.Qtype, client)
	if len(m.Answer) == before {
		m.Ns = append(m.Ns, apex.NegativeSOA)
	}
}

// podRecord answers a pod name, <dashed-ip>.<namespace>.pod.<zone>, in a
// forward zone. It reports false when name is not one.
func (r *Responder) podRecord(m *dns.Msg, name string, qtype uint16, apex *zone.Apex) bool {
	if zone.InZone(apex.Name, "arpa.") {
		return false
	}
	rest, ok := strings.CutSuffix(name, ".pod."+apex.Name)
	if !ok {
		if name == "pod."+apex.Name {
			m.Ns = append(m.Ns, apex.NegativeSOA) // names exist below it
			return true
		}
		return false
	}
	label, ns, ok := strings.Cut(rest, ".")
	if !ok {
		if strings.Contains(rest, "\\") {
			return false
		}
		m.Ns = append(m.Ns, apex.NegativeSOA) // <namespace>.pod.<zone>
		return true
	}
	if strings.Contains(ns, ".") {
		return false
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", "."))
	if err != nil {
		if ip, err = netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err != nil {
			return false
		}
	}
	soa := apex.SOA.(*dns.SOA)
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: soa.Minttl}
	switch {
	case qtype == dns.TypeA && ip.Is4(), qtype == dns.TypeANY && ip.Is4():
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
	case qtype == dns.TypeAAAA && ip.Is6(), qtype == dns.TypeANY && ip.Is6():
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
	default:
		m.Ns = append(m.Ns, apex.NegativeSOA)
	}
	return true
}

// anyOrder is the order in which an ANY query picks the one RRset it is
// answered with (RFC 8482 minimal answers).
var anyOrder = []uint16{dns.TypeCNAME, dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypePTR, dns.TypeSOA, dns.TypeNS}

// records appends node's records of qtype to m.
func (r *Responder) records(m *dns.Msg, s *Scratch, node *zone.Node, qtype uint16, client netip.Addr) {
	switch qtype {
	case dns.TypeA:
		r.fixedOrChosen(m, s, node.FixedA, nil, node.ChosenA, qtype, client)
	case dns.TypeAAAA:
		r.fixedOrChosen(m, s, node.FixedAAAA, nil, node.ChosenAAAA, qtype, client)
	case dns.TypeSRV:
		r.fixedOrChosen(m, s, node.Rare().SRV, node.Rare().Extra, node.ChosenSRV, qtype, client)
	case dns.TypeTXT:
		m.Answer = append(m.Answer, node.Rare().TXT...)
	case dns.TypePTR:
		m.Answer = append(m.Answer, node.PTR...)
	case dns.TypeSOA:
		m.Answer = append(m.Answer, node.Rare().SOA...)
	case dns.TypeNS:
		m.Answer = append(m.Answer, node.Rare().NS...)
	case dns.TypeCNAME:
		if node.CNAME() != nil {
			m.Answer = append(m.Answer, node.CNAME())
		}
	case dns.TypeANY:
		for _, t := range anyOrder {
			r.records(m, s, node, t, client)
			if len(m.Answer) > 0 {
				m.Extra = m.Extra[:0]
				return
			}
		}
	}
}

func (r *Responder) fixedOrChosen(m *dns.Msg, s *Scratch, fixed, extra []dns.RR, c *zone.Choice, qtype uint16, client netip.Addr) {
	if c == nil {
		m.Answer = append(m.Answer, fixed...)
		m.Extra = append(m.Extra, extra...)
		return
	}
	// The request lives in the scratch: passed to steps through an
	// interface, a local would escape to the heap on every query.
	s.preq = policy.Request{Qtype: qtype, Client: client, TTL: c.Set.TTL}
	if s.explain != nil {
		s.picked, s.explain.Steps = c.Set.Policy.Explain(&s.preq, c.Set.Candidates, c.In)
		s.explain.choice(c)
	} else {
		s.picked = c.Set.Policy.Pick(&s.preq, c.Set.Candidates, c.In, s.picked[:0], &s.policy)
	}
	s.usedClient = s.usedClient || c.Set.Policy.UsesClient()
	ordered := c.Glue() && c.Set.Policy.Reorders()
	for pos, i := range s.picked {
		start := len(m.Answer)
		m.Answer = c.AppendRRs(m.Answer, i, &s.rrs)
		if ordered {
			// RFC 2782 clients try lower priorities first: the policy's
			// order becomes the priorities.
			for _, rr := range m.Answer[start:] {
				rr.(*dns.SRV).Priority = uint16(min(pos, 65535))
			}
		}
		if c.Glue() {
			m.Extra = c.AppendGlue(m.Extra, i, &s.rrs)
		}
	}
}

// finish counts the reply and packs it within limit bytes.
func (r *Responder) finish(m *dns.Msg, s *Scratch, limit int, qtype uint16, start time.Time) []byte {
	out, err := m.PackBuffer(s.buf)
	if err == nil && len(out) > limit {
		out, err = truncate(out, limit)
	}
	if err != nil {
		// Only a bug packs badly: answer SERVFAIL with nothing else.
		resetMsg(m)
		m.Id, m.Response, m.Rcode = s.req.Id, true, dns.RcodeServerFailure
		m.Question = s.req.Question
		out, _ = m.PackBuffer(s.buf)
	}
	// PackBuffer uses buf only when its length suffices: keep it whole.
	if cap(out) > len(s.buf) {
		s.buf = out[:cap(out)]
	}
	if r.Metrics != nil {
		r.Metrics.count(qtype, m.Rcode, time.Since(start).Seconds())
	}
	return out
}

// truncate cuts a packed reply to limit bytes in place. The additional
// section goes first, and dropping only it does not set TC (RFC 2181 9);
// if that is not enough, the answer keeps the records that fit, TC is set,
// and the authority goes too. A trailing OPT record is always kept.
//
// It cuts at record boundaries of the packed bytes: compression pointers
// only point backwards, so whatever stays remains valid.
func truncate(out []byte, limit int) ([]byte, error) {
	counts := [4]int{} // question, answer, authority, additional
	for i := range counts {
		counts[i] = int(binary.BigEndian.Uint16(out[4+2*i:]))
	}
	off := headerLen
	var err error
	for range counts[0] {
		if off, err = skipName(out, off); err != nil {
			return nil, err
		}
		off += 4
	}
	// ends[i] is the offset after the i-th record of answer and authority.
	answerStart := off
	var ends []int
	for range counts[1] + counts[2] {
		if off, err = skipRR(out, off); err != nil {
			return nil, err
		}
		ends = append(ends, off)
	}
	var opt []byte
	if counts[3] > 0 {
		last := off
		for range counts[3] {
			last = off
			if off, err = skipRR(out, off); err != nil {
				return nil, err
			}
		}
		if binary.BigEndian.Uint16(out[last+1:]) == dns.TypeOPT && out[last] == 0 {
			opt = out[last:off]
		}
	}
	keepAN, keepNS, end := counts[1], counts[2], answerStart
	if len(ends) > 0 {
		end = ends[len(ends)-1]
	}
	tc := false
	if end+len(opt) > limit {
		tc, keepNS = true, 0
		keepAN = 0
		end = answerStart
		for i := 0; i < counts[1] && ends[i]+len(opt) <= limit; i++ {
			keepAN, end = i+1, ends[i]
		}
	}
	n := copy(out[end:], opt)
	out = out[:end+n]
	binary.BigEndian.PutUint16(out[6:], uint16(keepAN))
	binary.BigEndian.PutUint16(out[8:], uint16(keepNS))
	binary.BigEndian.PutUint16(out[10:], uint16(min(1, len(opt))))
	if tc {
		out[2] |= 0x02
	}
	return out, nil
}

var errShortReply = errors.New("server: packed reply ends inside a record")

func skipName(b []byte, off int) (int, error) {
	for {
		if off >= len(b) {
			return 0, errShortReply
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			return off + 2, nil
		default:
			off += 1 + l
		}
	}
}

func skipRR(b []byte, off int) (int, error) {
	off, err := skipName(b, off)
	if err != nil || off+10 > len(b) {
		return 0, errShortReply
	}
	off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
	if off > len(b) {
		return 0, errShortReply
	}
	return off, nil
}

// lower returns s in lower case, without allocating when it already is.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
