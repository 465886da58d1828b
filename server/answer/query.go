package answer

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/wire"
)

// query is what answering reads from a query packet, whichever parser
// read it: parseWire for the common queries, parseMsg (miekg/dns) for
// the rest.
type query struct {
	id     uint16
	opcode uint8
	rd, cd bool
	// malformed: the packet does not parse; only id and opcode are set.
	malformed bool

	// qdcount is the number of questions; the fields below describe the
	// first, which is the one answered when it is the only one.
	qdcount       int
	qtype, qclass uint16
	// asked is the question name as asked, lower in lower case, both in
	// presentation form.
	asked, lower string
	// plain: the question section is qsection, one question whose name
	// has only letters, digits, '-' and '_' (so that its presentation
	// offsets are its wire offsets). Otherwise questions holds them all.
	plain     bool
	qsection  []byte
	questions []dns.Question

	// opts is the number of OPT records; the fields below are the OPT's
	// when there is exactly one.
	opts    int
	do      bool
	version uint8
	udpSize uint16
	hasECS  bool
	ecs     ecsOption

	// tsig is the query's TSIG record, the last additional record, which
	// parseMsg alone reads (parseWire takes no record but an OPT); it
	// aliases the Scratch's unpacked message. badTSIG: a TSIG record
	// stands elsewhere, there are several (RFC 8945 5.2), or it has no
	// data.
	tsig    *dns.TSIG
	badTSIG bool
}

// ecsOption is an EDNS Client Subnet option as a query carries it,
// valid or not (client validates it).
type ecsOption struct {
	family      uint16
	bits, scope uint8
	addr        [16]byte // the address octets, zero-filled
}

// client returns the address the option names, masked to its source
// prefix; false when the option is malformed (RFC 7871 6: family IPv4 or
// IPv6, a source prefix within the address, scope 0 in a query).
func (e *ecsOption) client() (netip.Addr, bool) {
	var a netip.Addr
	switch e.family {
	case 1:
		a = netip.AddrFrom4([4]byte(e.addr[:4]))
	case 2:
		a = netip.AddrFrom16(e.addr)
		if a.Is4In6() {
			return netip.Addr{}, false
		}
	default:
		return netip.Addr{}, false
	}
	if int(e.bits) > a.BitLen() || e.scope != 0 {
		return netip.Addr{}, false
	}
	p, err := a.Prefix(int(e.bits))
	if err != nil {
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

// hasOpt reports whether the query carries an OPT record.
func (q *query) hasOpt() bool { return q.opts > 0 }

// plainName holds the bytes of a plain question name.
type plainName struct {
	asked, lower []byte
}

// bstr views b as a string without copying. The string must not outlive
// the next change to b: parseWire's names live for one query in their
// Scratch.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// parseWire fills q from pkt when pkt is a query it reads: a standard
// query with one question of a plain name and nothing else but an
// optional OPT record (options among ECS, NSID, cookie and padding). ok
// is false for everything else, which parseMsg reads.
func parseWire(pkt []byte, q *query, n *plainName) (ok bool) {
	if len(pkt) < wire.HeaderLen || pkt[2]&0xF8 != 0 || // QR, opcode
		binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 ||
		binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return false
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return false
	}
	off, ok := parsePlainName(pkt, n)
	if !ok || off+4 > len(pkt) || binary.BigEndian.Uint16(pkt[off+2:]) != dns.ClassINET {
		return false
	}
	*q = query{
		id: binary.BigEndian.Uint16(pkt), rd: pkt[2]&0x01 != 0, cd: pkt[3]&0x10 != 0,
		qdcount: 1, qtype: binary.BigEndian.Uint16(pkt[off:]), qclass: dns.ClassINET,
		asked: bstr(n.asked), lower: bstr(n.lower),
		plain: true, qsection: pkt[wire.HeaderLen : off+4],
	}
	off += 4
	if arcount == 0 {
		return off == len(pkt)
	}
	return parseOPT(pkt, off, q)
}

// parsePlainName reads the question name at the header's end into n when
// it is plain, and returns the offset after it.
func parsePlainName(pkt []byte, n *plainName) (int, bool) {
	n.asked, n.lower = n.asked[:0], n.lower[:0]
	off := wire.HeaderLen
	for {
		if off >= len(pkt) {
			return 0, false
		}
		l := int(pkt[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(pkt) {
			return 0, false
		}
		for _, c := range pkt[off+1 : off+1+l] {
			lc := c
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				lc = c + 'a' - 'A'
			default:
				return 0, false
			}
			n.asked = append(n.asked, c)
			n.lower = append(n.lower, lc)
		}
		n.asked = append(n.asked, '.')
		n.lower = append(n.lower, '.')
		off += 1 + l
	}
	return off, len(n.asked) > 0 && off-wire.HeaderLen <= 255
}

// parseOPT reads the OPT record at off, the packet's last record: root
// owner, type OPT, class = UDP size, TTL = extended rcode, version,
// flags; then the options. It is false for what miekg/dns might refuse
// or read otherwise.
func parseOPT(pkt []byte, off int, q *query) bool {
	if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != dns.TypeOPT {
		return false
	}
	q.opts = 1
	q.udpSize = binary.BigEndian.Uint16(pkt[off+3:])
	q.version = pkt[off+6]
	q.do = pkt[off+7]&0x80 != 0
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
			// Ignored, and read by miekg/dns without fail.
		case dns.EDNS0SUBNET:
			if !parseECS(data[:l], &q.ecs) {
				return false
			}
			q.hasECS = true
		default:
			return false
		}
	}
	return true
}

// parseECS reads a client subnet option as miekg/dns does: false where
// it fails (families other than IPv4 and IPv6 are left to it), the
// address zero-filled or cut to its family's length.
func parseECS(b []byte, e *ecsOption) bool {
	if len(b) < 4 {
		return false
	}
	*e = ecsOption{family: binary.BigEndian.Uint16(b), bits: b[2], scope: b[3]}
	size := 16
	switch e.family {
	case 1:
		size = 4
	case 2:
	default:
		return false
	}
	if int(e.bits) > 8*size || int(e.scope) > 8*size {
		return false
	}
	copy(e.addr[:size], b[4:])
	return true
}

// parseMsg fills q from pkt with miekg/dns, for the queries parseWire
// does not read; req holds what it unpacks.
func parseMsg(pkt []byte, q *query, req *dns.Msg) {
	*q = query{id: binary.BigEndian.Uint16(pkt), opcode: pkt[2] >> 3 & 0xF}
	if !wellFormed(pkt) || req.Unpack(pkt) != nil {
		q.malformed = true
		return
	}
	q.rd, q.cd = req.RecursionDesired, req.CheckingDisabled
	q.questions, q.qdcount = req.Question, len(req.Question)
	if q.qdcount > 0 {
		first := &req.Question[0]
		q.qtype, q.qclass = first.Qtype, first.Qclass
		q.asked, q.lower = first.Name, wire.Lower(first.Name)
	}
	q.tsig, q.badTSIG = tsigOf(req)
	var opt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			q.opts++
			opt = o
		}
	}
	if q.opts != 1 {
		return
	}
	q.udpSize, q.version, q.do = opt.UDPSize(), uint8(opt.Version()), opt.Do()
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			q.hasECS = true
			q.ecs = ecsOption{family: e.Family, bits: e.SourceNetmask, scope: e.SourceScope}
			if a := e.Address.To4(); a != nil && e.Family != 2 {
				copy(q.ecs.addr[:], a)
			} else {
				copy(q.ecs.addr[:], e.Address)
			}
		}
	}
}

// tsigOf returns the TSIG record of req, and bad when a TSIG record is
// anywhere but last among the additional records or there are several (a
// TSIG record must be the message's last record, RFC 8945 5.1), or when
// it has no data (miekg/dns unpacks it with an empty algorithm name).
func tsigOf(req *dns.Msg) (tsig *dns.TSIG, bad bool) {
	for _, section := range [...][]dns.RR{req.Answer, req.Ns, req.Extra} {
		for _, rr := range section {
			if t, ok := rr.(*dns.TSIG); ok {
				if tsig != nil {
					return nil, true
				}
				tsig = t
			}
		}
	}
	if tsig != nil && (tsig != req.IsTsig() || tsig.Algorithm == "") {
		return nil, true
	}
	return tsig, false
}

// wellFormed reports whether pkt holds exactly the records its header
// counts and nothing after them, with an OPT record only in the
// additional section (RFC 6891 6.1.1). miekg/dns reads past lying counts
// and trailing bytes; hdns answers such packets FORMERR, as Knot does.
func wellFormed(pkt []byte) bool {
	off := wire.HeaderLen
	for i := 0; i < int(binary.BigEndian.Uint16(pkt[4:])); i++ {
		if off = skipName(pkt, off); off < 0 || off+4 > len(pkt) {
			return false
		}
		off += 4
	}
	for section := 0; section < 3; section++ {
		count := int(binary.BigEndian.Uint16(pkt[6+2*section:]))
		for i := 0; i < count; i++ {
			if off = skipName(pkt, off); off < 0 || off+10 > len(pkt) {
				return false
			}
			if section < 2 && binary.BigEndian.Uint16(pkt[off:]) == dns.TypeOPT {
				return false
			}
			if off += 10 + int(binary.BigEndian.Uint16(pkt[off+8:])); off > len(pkt) {
				return false
			}
		}
	}
	return off == len(pkt)
}

// skipName returns the offset after the name at off, or -1 when it runs
// past pkt or holds a label type other than plain and pointer.
func skipName(pkt []byte, off int) int {
	for off < len(pkt) {
		l := int(pkt[off])
		switch {
		case l == 0:
			return off + 1
		case l&0xC0 == 0xC0:
			if off+2 > len(pkt) {
				return -1
			}
			return off + 2
		case l&0xC0 != 0:
			return -1
		}
		off += 1 + l
	}
	return -1
}
