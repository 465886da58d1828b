package answer

import (
	"strings"

	"github.com/hdns-dev/hdns/server/wire"
)

// compEntry is a name suffix written into the reply at off, for
// compression (in addition to a plain question's suffixes).
type compEntry struct {
	name string
	off  int
}

// maxCompressionOffset is the largest offset a compression pointer can
// name; miekg/dns remembers names only below it.
const maxCompressionOffset = 2 << 13

// name appends a domain name, given in presentation form, as miekg/dns's
// packDomainName does with compression on: the longest suffix, matched
// case-sensitively in presentation form, among the names already written
// becomes a pointer when compress is set, and every suffix written out in
// full is remembered for later names, compressed or not. The suffixes of
// a plain question (w.asked, at offset 12) are remembered implicitly. ok
// is false for a name miekg/dns refuses to pack.
func (w *writer) name(name string, compress bool) (ok bool) {
	if compress && name == w.last && w.lastOff >= 0 {
		w.b = append(w.b, byte(0xC0|w.lastOff>>8), byte(w.lastOff))
		return true
	}
	if name == "." {
		w.b = append(w.b, 0)
		return true
	}
	full := -1
	for i := 0; i < len(name); {
		if p := w.find(name[i:]); p >= 0 {
			if compress {
				if i == 0 {
					full = p
				}
				w.b = append(w.b, byte(0xC0|p>>8), byte(p))
				break
			}
		} else if len(w.b) < maxCompressionOffset {
			w.comp = append(w.comp, compEntry{name[i:], len(w.b)})
			if i == 0 {
				full = len(w.b)
			}
		}
		if i, ok = w.label(name, i); !ok {
			return false
		}
		if i == len(name) {
			w.b = append(w.b, 0)
		}
	}
	if compress {
		w.last, w.lastOff = name, full
	}
	return true
}

// owner appends a record's owner name: a pointer to the question when it
// is the question's name (which zone owners are, in lower case), so that
// the owner reads as asked (RFC 4343: case is kept where it can be);
// else the name compressed. The root stays one octet.
func (w *writer) owner(name string) (ok bool) {
	if name == w.question && len(name) > 1 {
		w.b = append(w.b, 0xC0, wire.HeaderLen)
		return true
	}
	return w.name(name, true)
}

// label appends the label of name that starts at i, unescaping \X and
// \DDD, and returns the index after its dot. ok is false when it is empty
// or longer than 63 octets, or when name ends without a dot.
func (w *writer) label(name string, i int) (next int, ok bool) {
	j := strings.IndexByte(name[i:], '.')
	if j < 0 {
		return 0, false
	}
	if j < 64 && strings.IndexByte(name[i:i+j], '\\') < 0 {
		if j == 0 {
			return 0, false
		}
		w.b = append(w.b, byte(j))
		w.b = append(w.b, name[i:i+j]...)
		return i + j + 1, true
	}
	at := len(w.b)
	w.b = append(w.b, 0)
	for ; i < len(name) && name[i] != '.'; i++ {
		c := name[i]
		if c == '\\' {
			if i+1 == len(name) {
				return 0, false
			}
			if isDDD(name[i+1:]) {
				c = (name[i+1]-'0')*100 + (name[i+2]-'0')*10 + (name[i+3] - '0')
				i += 3
			} else {
				c = name[i+1]
				i++
			}
		}
		w.b = append(w.b, c)
	}
	l := len(w.b) - at - 1
	if i == len(name) || l == 0 || l > 63 {
		return 0, false
	}
	w.b[at] = byte(l)
	return i + 1, true
}

// isDDD reports whether s starts with three decimal digits.
func isDDD(s string) bool {
	return len(s) >= 3 && isDigit(s[0]) && isDigit(s[1]) && isDigit(s[2])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// find returns the offset of suffix among the names written so far, or -1.
func (w *writer) find(suffix string) int {
	if a := w.asked; a != "" {
		if n := len(a) - len(suffix); n >= 0 && a[n:] == suffix && (n == 0 || a[n-1] == '.') {
			return 12 + n
		}
	}
	for _, e := range w.comp {
		if e.name == suffix {
			return e.off
		}
	}
	return -1
}
