package policy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkSteps measures one Pick of each step, and of chains, on 10,
// 100, 1,000 and 10,000 candidates, with "ordered" as the baseline of the
// same run: the ratio metric is ns/op over ordered's. A Service's size
// should not show in the chains that keep a few places (first=N).
func BenchmarkSteps(b *testing.B) {
	specs := []string{"ordered", "round-robin", "random", "weighted", "least-loaded", "sticky", "drain", "first=2",
		"least-loaded, first=1", "least-loaded, first=2", "sticky, first=1", "round-robin, first=1", "random, first=1",
		"weighted, first=1", "drain, first=1", "drain, least-loaded, first=1"}
	for _, n := range []int{10, 100, 1000, 10000} {
		cands := candidates(n)
		in := indices(n)
		var baseline float64
		for _, spec := range specs {
			c := mustChain(b, spec)
			b.Run(fmt.Sprintf("n=%d/%s", n, spec), func(b *testing.B) {
				var s Scratch
				out := make([]int, 0, n)
				req := &Request{Client: netip.MustParseAddr("10.0.0.1"), TTL: 5}
				b.ReportAllocs()
				for b.Loop() {
					out = c.Pick(req, cands, in, out[:0], &s)
				}
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if spec == "ordered" {
					baseline = ns
				}
				if baseline > 0 {
					b.ReportMetric(ns/baseline, "x-ordered")
				}
			})
		}
	}
}

// BenchmarkLeastLoadedLive is least-loaded, first=1 with a fresh live value
// per candidate (the ledger blended with live load), and with it the holds
// of 64 clients asking in turn, against the ledger alone; x-ledger is the
// ratio.
func BenchmarkLeastLoadedLive(b *testing.B) {
	for _, n := range []int{10, 1000} {
		var baseline float64
		for _, mode := range []string{"ledger", "live", "live+clients"} {
			cands := candidates(n)
			if mode != "ledger" {
				now := time.Now()
				for i := range cands {
					cands[i].Live = new(Live)
					cands[i].Live.Set(&Sample{Value: float64(i), At: now, Until: now.Add(time.Hour)})
				}
			}
			c := mustChain(b, "least-loaded, first=1")
			in := indices(n)
			b.Run(fmt.Sprintf("n=%d/%s", n, mode), func(b *testing.B) {
				var s Scratch
				out := make([]int, 0, n)
				req := &Request{TTL: 5}
				b.ReportAllocs()
				k := 0
				for b.Loop() {
					if mode == "live+clients" {
						req.Client = clientAddr(k % 64)
						k++
					}
					out = c.Pick(req, cands, in, out[:0], &s)
				}
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				if mode == "ledger" {
					baseline = ns
				} else if baseline > 0 {
					b.ReportMetric(ns/baseline, "x-ledger")
				}
			})
		}
	}
}
