package server

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/server/internal/fixture"
)

// TestTSIGUnknownKeyRealClients: clients that sign their queries with a
// key hdns does not know (all keys) get NOTAUTH with an unsigned BADKEY
// TSIG, over UDP and TCP, as miekg/dns's client and dig see it.
func TestTSIGUnknownKeyRealClients(t *testing.T) {
	s := startServer(t, fixture.Cluster(t))
	const key, secret = "transfer-key.", "c2VjcmV0c2VjcmV0c2VjcmV0"
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 2 * time.Second, TsigSecret: map[string]string{key: secret}}
		addr := s.UDPAddr().String()
		if network == "tcp" {
			addr = s.TCPAddr().String()
		}
		m := fixture.Query("web-headless.awx.svc.cluster.local.", dns.TypeA)
		m.SetTsig(key, dns.HmacSHA256, 300, time.Now().Unix())
		r, _, err := c.Exchange(m, addr)
		// The reply is unsigned, which the client reports as an error.
		if r == nil {
			t.Fatalf("%s: no reply: %v", network, err)
		}
		tsig := r.IsTsig()
		if r.Rcode != dns.RcodeNotAuth || tsig == nil || tsig.Error != dns.RcodeBadKey || tsig.MAC != "" || len(r.Answer) != 0 {
			t.Errorf("%s: %v\n%s", network, err, r)
		}
	}

	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig is not installed (bind9-dnsutils; scripts/setup installs it)")
	}
	host, port, _ := net.SplitHostPort(s.UDPAddr().String())
	for _, tcp := range []string{"+notcp", "+tcp"} {
		out, _ := exec.Command("dig", "@"+host, "-p", port, tcp, "+time=2", "+tries=1",
			"-y", "hmac-sha256:"+key+":"+secret, "web-headless.awx.svc.cluster.local.").CombinedOutput()
		text := string(out)
		if !strings.Contains(text, "status: NOTAUTH") || !strings.Contains(text, "BADKEY") {
			t.Errorf("dig %s -y: want NOTAUTH with a BADKEY TSIG, got\n%s", tcp, text)
		}
	}
}
