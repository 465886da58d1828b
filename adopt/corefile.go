// Package adopt points CoreDNS at hdns for the Services that opt in, so
// that their existing names (<service>.<namespace>.svc.<zone>) get hdns's
// answers with no client change. CoreDNS serves a name from the server
// block of the longest zone that matches it, so one block per opted-in
// Service, forwarding to hdns, takes that Service's names from the
// kubernetes plugin and leaves every other name where it was.
//
// It owns three things: the Corefile text of those blocks (Corefile,
// Render), the set of Services they name, kept by a zone.Sink that sits in
// front of the zone's own (View), and the ConfigMap key CoreDNS imports them
// from (ConfigMap, Keeper). It reads the Services the zone's source already
// watches and opens no watch of its own.
//
// It must not import server/, policy/ or the sources (source/...): it sees
// Services only as package zone shrinks them.
package adopt

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hdns-dev/hdns/zone"
)

// Opted reports whether s gets a server block: a headless Service with a
// non-empty hdns.dev/policy annotation. A ClusterIP Service's name is
// answered with its cluster IPs, which hdns would only repeat, and an
// ExternalName's with a CNAME: neither is balanced, so neither is taken
// from CoreDNS, annotated or not.
func Opted(s *zone.Service) bool {
	return s.Kind == zone.KindHeadless && s.Policy != ""
}

// Corefile says how the server blocks are written. The zero value names no
// zone and renders no block.
type Corefile struct {
	// Zones are the cluster's zones, as zone.CanonicalZone returns them;
	// every opted-in Service gets a block in each.
	Zones []string
	// Port is the port of CoreDNS's own server block for the cluster
	// zone (53 in most clusters; Gardener's is 8053): a block on another
	// port is another server, which pods never ask. 0 means 53.
	Port uint16
	// Upstreams are where the blocks forward: hdns's Service address(es).
	Upstreams []netip.AddrPort
}

// header opens every rendering, blocks or not: CoreDNS parses a file of
// comments as no block, and readers of the ConfigMap learn who wrote it.
const header = "# Written by hdns (--coredns-configmap): a server block per headless Service\n" +
	"# with the hdns.dev/policy annotation, forwarding its names to hdns. hdns\n" +
	"# rewrites this key whenever that set changes; edits are lost.\n"

// Render returns the server blocks for services, those Opted, in the order
// of their names and then of Zones, so that the same set of Services gives
// the same bytes in every replica and at every call. Without Upstreams it
// renders the header alone: a block that forwards nowhere would fail
// CoreDNS's reload.
func (c *Corefile) Render(services []*zone.Service) string {
	var b strings.Builder
	b.WriteString(header)
	if len(c.Upstreams) == 0 {
		return b.String()
	}
	opted := make([]*zone.Service, 0, len(services))
	for _, s := range services {
		if Opted(s) {
			opted = append(opted, s)
		}
	}
	slices.SortFunc(opted, func(a, b *zone.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	opted = slices.CompactFunc(opted, func(a, b *zone.Service) bool { return a.Namespace == b.Namespace && a.Name == b.Name })
	port := c.Port
	if port == 0 {
		port = 53
	}
	to := make([]string, len(c.Upstreams))
	for i, u := range c.Upstreams {
		to[i] = u.String()
	}
	forward := "    forward . " + strings.Join(to, " ") + "\n"
	for _, s := range opted {
		for _, z := range c.Zones {
			fmt.Fprintf(&b, "%s.%s.svc.%s:%s {\n", s.Name, s.Namespace, strings.TrimSuffix(z, "."), strconv.Itoa(int(port)))
			b.WriteString(forward)
			b.WriteString("}\n")
		}
	}
	return b.String()
}

// ServiceUpstreams returns the addresses CoreDNS reaches the Service s at
// for DNS: each cluster IP with the Service's first UDP port (53 when it
// names none). A headless or ExternalName Service has none.
func ServiceUpstreams(s *zone.Service) []netip.AddrPort {
	port := uint16(53)
	for _, p := range s.Ports {
		if p.Protocol == "udp" {
			port = p.Port
			break
		}
	}
	var out []netip.AddrPort
	for _, ip := range s.ClusterIPs {
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	return out
}
