package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkSteps measures one Pick of each step, and of chains, on 3 and
// 100 candidates, with "ordered" as the baseline of the same run: the
// ratio metric is ns/op over ordered's.
func BenchmarkSteps(b *testing.B) {
	specs := []string{"ordered", "round-robin", "random", "weighted", "least-loaded", "sticky", "drain", "first=2", "least-loaded, first=2", "sticky, first=1"}
	for _, n := range []int{3, 100} {
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
