package dnstest_test

import (
	"fmt"

	"github.com/miekg/dns"

	"github.com/hdns-dev/hdns/internal/dnstest"
)

func ExampleStrings() {
	a, _ := dns.NewRR("web.awx.svc.cluster.local. 5 IN A 10.0.0.1")
	m := new(dns.Msg).SetEdns0(1232, false)
	fmt.Println(dnstest.Strings(append([]dns.RR{a}, m.Extra...)))
	// Output: [web.awx.svc.cluster.local. 5 IN A 10.0.0.1]
}
