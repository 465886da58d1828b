// Package dnstest renders DNS records as the zone-file strings that tests
// compare answers with ("web.awx.svc.cluster.local. 5 IN A 10.0.0.1").
//
// It is test-only: no production package may import it
// (TestNoProductionImports in internal/fixture checks). It must import no
// hdns package, so that every package's tests, zone's own in-package tests
// included, can import it without a cycle.
package dnstest

import (
	"strings"

	"github.com/miekg/dns"
)

// Strings renders records in presentation format with one space between
// fields. It leaves out OPT pseudo-records: they carry the message's EDNS
// options, not answer data.
func Strings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}
