package answer

import (
	"encoding/binary"
	"net"

	"github.com/miekg/dns"
)

// rr appends a record of a type hdns answers with (A, AAAA, SRV, CNAME,
// PTR, TXT, NS, SOA) as miekg/dns packs it: the owner and the names in
// the data compressed, except an SRV target (RFC 2782), which is only
// remembered for later names. ok is false for anything else.
func (w *writer) rr(rr dns.RR) (ok bool) {
	h := rr.Header()
	if !w.owner(h.Name) {
		return false
	}
	w.b = appendRRHeader(w.b, h.Rrtype, h.Class, h.Ttl)
	w.b = append(w.b, 0, 0)
	start := len(w.b)
	switch rr := rr.(type) {
	case *dns.A:
		ok = w.ip(rr.A.To4(), len(rr.A) == 0)
	case *dns.AAAA:
		ok = w.ip(rr.AAAA, len(rr.AAAA) == 0)
		ok = ok && (len(rr.AAAA) == 0 || len(rr.AAAA) == net.IPv6len)
	case *dns.SRV:
		w.b = append(w.b, byte(rr.Priority>>8), byte(rr.Priority), byte(rr.Weight>>8), byte(rr.Weight), byte(rr.Port>>8), byte(rr.Port))
		ok = w.name(rr.Target, false)
	case *dns.CNAME:
		ok = w.name(rr.Target, true)
	case *dns.PTR:
		ok = w.name(rr.Ptr, true)
	case *dns.NS:
		ok = w.name(rr.Ns, true)
	case *dns.SOA:
		ok = w.name(rr.Ns, true) && w.name(rr.Mbox, true)
		for _, v := range [5]uint32{rr.Serial, rr.Refresh, rr.Retry, rr.Expire, rr.Minttl} {
			w.b = binary.BigEndian.AppendUint32(w.b, v)
		}
	case *dns.TXT:
		ok = true
		for _, t := range rr.Txt {
			ok = ok && w.txt(t)
		}
	}
	if !ok || len(w.b)-start > 0xFFFF {
		return false
	}
	binary.BigEndian.PutUint16(w.b[start-2:], uint16(len(w.b)-start))
	return true
}

// ip appends an address record's data; empty is the record without
// data that dynamic updates use.
func (w *writer) ip(ip net.IP, empty bool) bool {
	if empty {
		return true
	}
	if ip == nil {
		return false
	}
	w.b = append(w.b, ip...)
	return true
}

// txt appends one character string of a TXT record, unescaping \X and
// \DDD as miekg/dns does.
func (w *writer) txt(s string) bool {
	at := len(w.b)
	w.b = append(w.b, 0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' {
			if i++; i == len(s) {
				break
			}
			c = s[i]
			if isDDD(s[i:]) {
				c = (s[i]-'0')*100 + (s[i+1]-'0')*10 + (s[i+2] - '0')
				i += 2
			}
		}
		w.b = append(w.b, c)
	}
	l := len(w.b) - at - 1
	if l > 255 {
		return false
	}
	w.b[at] = byte(l)
	return true
}
