package answer

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/policy"
	"github.com/hdns-dev/hdns/zone"
)

// The fast path answers the common queries — one IN question for A or
// AAAA, for the SRV records a headless Service's policy chooses, or for a
// name that does not exist, with at most an OPT record —
// straight from the wire into the scratch buffer, without dns.Msg. It
// produces exactly the bytes the general path (Unpack, answer, Pack with
// compression, truncate) produces for the same query, so that the two can
// be compared byte for byte (fast_test.go); whatever it does not recognise
// it leaves to the general path, before any policy runs.

// fastQuery is what the fast path parses from a query.
type fastQuery struct {
	qend   int // offset after the question
	qtype  uint16
	limit  int  // reply size limit for the transport
	hasOpt bool // the query carried an OPT record
	do     bool // its DO bit
	hasECS bool
	ecs    ecsOption
}

// ecsOption is a well-formed EDNS Client Subnet option of a query.
type ecsOption struct {
	family uint16
	bits   uint8
	addr   netip.Addr // masked to bits
}

// fastName is the question name in presentation form: as asked, and in
// lower case. Its only characters are letters, digits, '-', '_' and the
// dots between labels, so that presentation offsets equal wire offsets
// from the name's start and nothing needs escaping.
type fastName struct {
	asked, lower []byte
}

// compEntry is a name suffix written into the reply at off, for
// compression (in addition to the question's suffixes).
type compEntry struct {
	name string
	off  int
}

// fastState is the fast path's part of a Scratch.
type fastState struct {
	name fastName
	q    fastQuery
	comp []compEntry
	// last and lastOff cache the previous owner name written and the
	// offset a pointer to it goes to (-1 when none can).
	last    string
	lastOff int
	// rrs holds one candidate's records while they are written.
	rrs []dns.RR
}

// bstr views b as a string without copying. The string must not outlive
// the next change to b: the fast path uses it for one query only and
// stores it nowhere beyond its Scratch.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parseFast parses pkt when it is a query the fast path answers: a
// standard query with one question and nothing else but an optional OPT
// record (version 0, options among ECS, NSID, cookie and padding). ok is
// false for everything else.
func parseFast(pkt []byte, tcp bool, fs *fastState) (ok bool) {
	if len(pkt) < headerLen || pkt[2]&0xF8 != 0 || // QR, opcode
		binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 ||
		binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return false
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return false
	}
	n := &fs.name
	n.asked, n.lower = n.asked[:0], n.lower[:0]
	off := headerLen
	for {
		if off >= len(pkt) {
			return false
		}
		l := int(pkt[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(pkt) {
			return false
		}
		for _, c := range pkt[off+1 : off+1+l] {
			lc := c
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				lc = c + 'a' - 'A'
			default:
				return false
			}
			n.asked = append(n.asked, c)
			n.lower = append(n.lower, lc)
		}
		n.asked = append(n.asked, '.')
		n.lower = append(n.lower, '.')
		off += 1 + l
	}
	if len(n.asked) == 0 || off-headerLen > 255 || off+4 > len(pkt) {
		return false
	}
	q := &fs.q
	*q = fastQuery{qend: off + 4, qtype: binary.BigEndian.Uint16(pkt[off:])}
	if binary.BigEndian.Uint16(pkt[off+2:]) != dns.ClassINET {
		return false
	}
	q.limit = 512
	if tcp {
		q.limit = dns.MaxMsgSize
	}
	off = q.qend
	if arcount == 0 {
		return off == len(pkt)
	}
	// The OPT record: root owner, type OPT, class = UDP size, TTL =
	// extended rcode, version, flags; then the options.
	if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != dns.TypeOPT || pkt[off+6] != 0 {
		return false
	}
	q.hasOpt = true
	q.do = pkt[off+7]&0x80 != 0
	if !tcp {
		q.limit = min(max(int(binary.BigEndian.Uint16(pkt[off+3:])), 512), maxUDPSize)
	}
	end := off + 11 + int(binary.BigEndian.Uint16(pkt[off+9:]))
	if end != len(pkt) {
		return false
	}
	for off += 11; off < end; {
		if off+4 > end {
			return false
		}
		code, l := binary.BigEndian.Uint16(pkt[off:]), int(binary.BigEndian.Uint16(pkt[off+2:]))
		data := pkt[off+4:]
		off += 4 + l
		if off > end {
			return false
		}
		switch code {
		case dns.EDNS0NSID, dns.EDNS0COOKIE, dns.EDNS0PADDING:
			// Ignored, and parsed by miekg/dns without fail.
		case dns.EDNS0SUBNET:
			if q.hasECS || !parseECS(data[:l], &q.ecs) {
				return false
			}
			q.hasECS = true
		default:
			return false
		}
	}
	return true
}

// parseECS parses a well-formed client subnet option (RFC 7871 6: scope
// 0, the address in exactly as many octets as the prefix needs).
func parseECS(b []byte, e *ecsOption) bool {
	if len(b) < 4 || b[3] != 0 {
		return false
	}
	e.family, e.bits = binary.BigEndian.Uint16(b), b[2]
	var a [16]byte
	want := (int(e.bits) + 7) / 8
	if len(b)-4 != want {
		return false
	}
	switch e.family {
	case 1:
		if e.bits > 32 {
			return false
		}
		copy(a[:4], b[4:])
		e.addr = netip.AddrFrom4([4]byte(a[:4]))
	case 2:
		if e.bits > 128 {
			return false
		}
		copy(a[:], b[4:])
		e.addr = netip.AddrFrom16(a)
	default:
		return false
	}
	p, err := e.addr.Prefix(int(e.bits))
	if err != nil {
		return false
	}
	e.addr = p.Addr()
	return true
}

// respondFast answers pkt when the fast path can; ok is false, with
// nothing done (no policy run, nothing counted), when it cannot.
func (r *Responder) respondFast(pkt []byte, client netip.Addr, tcp bool, s *Scratch, start time.Time) (out []byte, ok bool) {
	fs := &s.fast
	if !parseFast(pkt, tcp, fs) {
		return nil, false
	}
	q := &fs.q
	if q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR {
		return nil, false
	}
	snap := r.Snapshot()
	if snap == nil {
		return nil, false
	}
	lname := bstr(fs.name.lower)
	apex, node := snap.LookupInto(lname, &s.rrs)
	if apex == nil {
		return nil, false
	}
	var fixed []dns.RR
	var choice *zone.Choice
	if node != nil {
		if node.CNAME() != nil {
			return nil, false
		}
		switch q.qtype {
		case dns.TypeA:
			fixed, choice = node.A, node.A4
		case dns.TypeAAAA:
			fixed, choice = node.AAAA, node.A6
		case dns.TypeSRV:
			// A headless Service's chosen SRV records, or none; a
			// ClusterIP Service's fixed ones take the general path.
			if node.SRVs == nil && len(node.Other().SRV) > 0 {
				return nil, false
			}
			choice = node.SRVs
		default:
			return nil, false
		}
	} else if r.PodRecords {
		return nil, false
	}
	if q.hasECS && q.ecs.bits > 0 {
		client = q.ecs.addr
	}

	// Header, with the counts filled in at the end, and the question as
	// asked.
	b := append(s.buf[:0], pkt[0], pkt[1], 0x80|0x04|pkt[2]&0x01, pkt[3]&0x10, 0, 1, 0, 0, 0, 0, 0, 0)
	b = append(b, pkt[headerLen:q.qend]...)
	fs.comp, fs.last, fs.lastOff = fs.comp[:0], "", -1
	clear(fs.rrs[:cap(fs.rrs)]) // so that no record of an old snapshot lingers
	asked := bstr(fs.name.asked)
	// Replies over the limit are cut as truncate cuts them: the OPT
	// record always stays; answer records that do not fit go, with TC.
	optLen, alen := 0, 0
	if q.hasOpt {
		optLen = 11
		if q.hasECS {
			alen = (int(q.ecs.bits) + 7) / 8
			optLen += 8 + alen
		}
	}
	limit := q.limit - optLen
	var an, ns int
	usedClient, tc := false, false
	if node == nil {
		b[3] |= dns.RcodeNameError
	} else {
		if choice == nil {
			for _, rr := range fixed {
				end := len(b)
				if b, ok = fs.addrRR(b, asked, rr.Header().Name, rr); !ok {
					return nil, false
				}
				if len(b) > limit {
					b, tc = b[:end], true
					break
				}
				an++
			}
		} else if q.qtype == dns.TypeSRV {
			s.preq = policy.Request{Qtype: q.qtype, Client: client, TTL: choice.Set.TTL}
			s.picked = choice.Set.Policy.Pick(&s.preq, choice.Set.Candidates, choice.In, s.picked[:0], &s.policy)
			usedClient = choice.Set.Policy.UsesClient()
			if b, an, tc, ok = fs.srvAnswer(b, asked, choice, s.picked, limit, &s.rrs); !ok {
				return nil, false
			}
		} else {
			s.preq = policy.Request{Qtype: q.qtype, Client: client, TTL: choice.Set.TTL}
			s.picked = choice.Set.Policy.Pick(&s.preq, choice.Set.Candidates, choice.In, s.picked[:0], &s.policy)
			usedClient = choice.Set.Policy.UsesClient()
			for _, i := range s.picked {
				ip := choice.Addr(i)
				if ip == nil {
					continue
				}
				end := len(b)
				if b, ok = fs.addr(b, asked, choice.Owner, q.qtype, choice.Set.TTL, ip); !ok {
					return nil, false
				}
				if len(b) > limit {
					b, tc = b[:end], true
					break
				}
				an++
			}
		}
	}
	glue := 0
	if q.qtype == dns.TypeSRV && choice != nil && !tc {
		if b, glue, ok = fs.glue(b, asked, choice, s.picked, limit, &s.rrs); !ok {
			return nil, false
		}
	}
	if an == 0 && !tc {
		end := len(b)
		if b, ok = fs.soaRR(b, asked, apex.NegativeSOA); !ok {
			return nil, false
		}
		ns = 1
		if len(b) > limit {
			b, tc, ns = b[:end], true, 0
		}
	}
	if tc {
		b[2] |= 0x02
	}
	ar := glue
	if q.hasOpt {
		ar++
		b = append(b, 0, 0, byte(dns.TypeOPT), maxUDPSize>>8, maxUDPSize&0xFF, 0, 0, 0, 0, 0, byte(optLen-11))
		if q.do {
			b[len(b)-4] = 0x80
		}
		if q.hasECS {
			e := &q.ecs
			scope := uint8(0)
			if usedClient {
				scope = e.bits
			}
			b = append(b, 0, byte(dns.EDNS0SUBNET), 0, byte(4+alen), 0, byte(e.family), e.bits, scope)
			if e.family == 1 {
				a := e.addr.As4()
				b = append(b, a[:alen]...)
			} else {
				a := e.addr.As16()
				b = append(b, a[:alen]...)
			}
		}
	}
	binary.BigEndian.PutUint16(b[6:], uint16(an))
	binary.BigEndian.PutUint16(b[8:], uint16(ns))
	binary.BigEndian.PutUint16(b[10:], uint16(ar))
	if cap(b) > cap(s.buf) {
		s.buf = b[:cap(b)]
	}
	out = b
	if r.Metrics != nil {
		r.Metrics.Count(q.qtype, int(out[3]&0xF), time.Since(start).Seconds())
	}
	return out, true
}

// addrRR appends an A or AAAA record as miekg/dns packs it.
func (fs *fastState) addrRR(b []byte, asked, owner string, rr dns.RR) ([]byte, bool) {
	var ip net.IP
	switch rr := rr.(type) {
	case *dns.A:
		ip = rr.A.To4()
	case *dns.AAAA:
		ip = rr.AAAA
		if len(ip) != net.IPv6len {
			return b, false
		}
	default:
		return b, false
	}
	if ip == nil {
		return b, false
	}
	h := rr.Header()
	return fs.addr(b, asked, owner, h.Rrtype, h.Ttl, ip)
}

// addr appends an address record, of rrtype A with a 4-byte ip or AAAA
// with a 16-byte one, as miekg/dns packs it.
func (fs *fastState) addr(b []byte, asked, owner string, rrtype uint16, ttl uint32, ip []byte) ([]byte, bool) {
	b, ok := fs.putName(b, asked, owner)
	if !ok {
		return b, false
	}
	b = append(b, byte(rrtype>>8), byte(rrtype), 0, byte(dns.ClassINET),
		byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl), 0, byte(len(ip)))
	return append(b, ip...), true
}

// srvAnswer appends the SRV records of the picked candidates of choice as
// the general path answers them (fixedOrChosen) and miekg/dns packs them:
// under choice.Owner, with the policy's order as the priorities when it
// reorders, targets uncompressed (RFC 2782). Like truncate, it keeps the
// records that fit within limit and reports tc when one did not.
func (fs *fastState) srvAnswer(b []byte, asked string, choice *zone.Choice, picked []int, limit int, rrs *zone.RRBuf) (_ []byte, an int, tc, ok bool) {
	ordered := choice.Set.Policy.Reorders()
	for pos, i := range picked {
		fs.rrs = choice.AppendRRs(fs.rrs[:0], i, rrs)
		for _, rr := range fs.rrs {
			srv, isSRV := rr.(*dns.SRV)
			if !isSRV {
				return b, 0, false, false
			}
			end := len(b)
			if b, ok = fs.putName(b, asked, choice.Owner); !ok {
				return b, 0, false, false
			}
			h := &srv.Hdr
			prio := srv.Priority
			if ordered {
				prio = uint16(min(pos, 65535))
			}
			b = append(b, byte(h.Rrtype>>8), byte(h.Rrtype), byte(h.Class>>8), byte(h.Class),
				byte(h.Ttl>>24), byte(h.Ttl>>16), byte(h.Ttl>>8), byte(h.Ttl), 0, 0,
				byte(prio>>8), byte(prio), byte(srv.Weight>>8), byte(srv.Weight), byte(srv.Port>>8), byte(srv.Port))
			rdata := len(b) - 6
			if b, ok = fs.putNameUncompressed(b, asked, srv.Target); !ok {
				return b, 0, false, false
			}
			binary.BigEndian.PutUint16(b[rdata-2:], uint16(len(b)-rdata))
			if len(b) > limit {
				return b[:end], an, true, true
			}
			an++
		}
	}
	return b, an, false, true
}

// glue appends the address records of the picked candidates' own names,
// the additional section of an SRV answer. When they do not all fit
// within limit it appends none, as truncate drops the whole additional
// section (without TC) when the answers fit.
func (fs *fastState) glue(b []byte, asked string, choice *zone.Choice, picked []int, limit int, rrs *zone.RRBuf) (_ []byte, n int, ok bool) {
	start := len(b)
	for _, i := range picked {
		fs.rrs = choice.AppendGlue(fs.rrs[:0], i, rrs)
		for _, rr := range fs.rrs {
			if b, ok = fs.addrRR(b, asked, rr.Header().Name, rr); !ok {
				return b, 0, false
			}
			n++
		}
	}
	if len(b) > limit {
		return b[:start], 0, true
	}
	return b, n, true
}

// soaRR appends an SOA record as miekg/dns packs it.
func (fs *fastState) soaRR(b []byte, asked string, rr dns.RR) ([]byte, bool) {
	soa, ok := rr.(*dns.SOA)
	if !ok {
		return b, false
	}
	h := &soa.Hdr
	if b, ok = fs.putName(b, asked, h.Name); !ok {
		return b, false
	}
	b = append(b, byte(h.Rrtype>>8), byte(h.Rrtype), byte(h.Class>>8), byte(h.Class),
		byte(h.Ttl>>24), byte(h.Ttl>>16), byte(h.Ttl>>8), byte(h.Ttl), 0, 0)
	rdata := len(b)
	if b, ok = fs.putName(b, asked, soa.Ns); !ok {
		return b, false
	}
	if b, ok = fs.putName(b, asked, soa.Mbox); !ok {
		return b, false
	}
	for _, v := range [5]uint32{soa.Serial, soa.Refresh, soa.Retry, soa.Expire, soa.Minttl} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	binary.BigEndian.PutUint16(b[rdata-2:], uint16(len(b)-rdata))
	return b, true
}

// maxCompressionOffset is the largest offset a compression pointer can
// name; miekg/dns remembers names only below it.
const maxCompressionOffset = 2 << 13

// putName appends a compressed domain name exactly as miekg/dns's
// packDomainName does: the longest suffix, matched case-sensitively,
// among the names already written becomes a pointer, and every suffix
// written out in full is remembered for later names. The question's
// suffixes (asked, at offset 12) are remembered implicitly. ok is false
// for names the fast path does not handle (escapes, not fully qualified).
func (fs *fastState) putName(b []byte, asked, name string) ([]byte, bool) {
	return fs.packName(b, asked, name, true)
}

// putNameUncompressed appends name in full, as miekg/dns packs a name it
// may not compress (an SRV target): no pointer, but each suffix not yet
// known is remembered for later names all the same.
func (fs *fastState) putNameUncompressed(b []byte, asked, name string) ([]byte, bool) {
	return fs.packName(b, asked, name, false)
}

// packName is packDomainName's logic for putName and putNameUncompressed.
func (fs *fastState) packName(b []byte, asked, name string, compress bool) ([]byte, bool) {
	if compress && name == fs.last && fs.lastOff >= 0 {
		return append(b, byte(0xC0|fs.lastOff>>8), byte(fs.lastOff)), true
	}
	if name == "." || !strings.HasSuffix(name, ".") || strings.IndexByte(name, '\\') >= 0 || strings.Contains(name, "..") || name[0] == '.' {
		return b, false
	}
	full := -1
	for i := 0; i < len(name); {
		if p := fs.find(asked, name[i:]); p >= 0 {
			if compress {
				if i == 0 {
					full = p
				}
				b = append(b, byte(0xC0|p>>8), byte(p))
				break
			}
		} else if len(b) < maxCompressionOffset {
			fs.comp = append(fs.comp, compEntry{name[i:], len(b)})
			if i == 0 {
				full = len(b)
			}
		}
		j := i + strings.IndexByte(name[i:], '.')
		if j-i >= 64 {
			return b, false
		}
		b = append(b, byte(j-i))
		b = append(b, name[i:j]...)
		i = j + 1
		if i == len(name) {
			b = append(b, 0)
		}
	}
	if compress {
		fs.last, fs.lastOff = name, full
	}
	return b, true
}

// find returns the offset of suffix among the names written so far, or -1.
func (fs *fastState) find(asked, suffix string) int {
	if n := len(asked) - len(suffix); n >= 0 && asked[n:] == suffix && (n == 0 || asked[n-1] == '.') {
		return headerLen + n
	}
	for _, e := range fs.comp {
		if e.name == suffix {
			return e.off
		}
	}
	return -1
}
