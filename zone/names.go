package zone

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// fits reports whether an FQDN without escapes fits the 255 octets of a
// wire-format name.
func fits(name string) bool { return fitsLen(len(name)) }

// fitsLen is fits for a name of n characters, for callers that need not
// build the name to know.
func fitsLen(n int) bool { return n+1 <= 255 }

// dashed is the label the spec gives an endpoint without a hostname:
// 10.0.0.1 → 10-0-0-1, fd00::1 → fd00--1.
func dashed(ip netip.Addr) string { return string(appendDashed(nil, ip)) }

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
