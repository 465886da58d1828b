package zone

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPTRSeqEdits: a sequence edited many times, across many chunks,
// holds what a sorted array edited the same way holds, finds the first
// record of an address across chunk boundaries, counts distinct
// addresses, and leaves the sequences it was made from as they were.
func TestPTRSeqEdits(t *testing.T) {
	for _, size := range []int{2, 64} {
		t.Run(fmt.Sprintf("group=%d", size), func(t *testing.T) {
			defer func(was int) { ptrGroupSize = was }(ptrGroupSize)
			ptrGroupSize = size
			testPTRSeqEdits(t)
		})
	}
}

func testPTRSeqEdits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sets := make([]*EndpointSet, 40)
	for i := range sets {
		sets[i] = &EndpointSet{Namespace: "n", Service: fmt.Sprint("s", i), owner: "x."}
	}
	var seq ptrSeq[ptr4]
	var want []ptr4
	type version struct {
		seq  ptrSeq[ptr4]
		want []ptr4
	}
	var old []version
	for round := range 150 {
		set := sets[r.IntN(len(sets))]
		var remove, add []ptr4
		for _, rec := range want {
			if rec.to.set == set {
				remove = append(remove, rec)
			}
		}
		for range r.IntN(200) {
			add = append(add, ptr4{addr: uint32(r.IntN(3000)), to: ptrTarget{set: set, idx: uint32(r.IntN(50))}})
		}
		add = sealed(add)
		if round%7 == 0 {
			add = nil // the Service goes
		}
		seq = seq.with(remove, add)
		want = slices.DeleteFunc(slices.Clone(want), func(rec ptr4) bool { return rec.to.set == set })
		want = append(want, add...)
		slices.SortFunc(want, comparePTR[ptr4])
		checkPTRSeq(t, seq, want)
		old = append(old, version{seq, want})
	}
	for _, v := range old {
		checkPTRSeq(t, v.seq, v.want)
	}
}

func checkPTRSeq(t *testing.T, seq ptrSeq[ptr4], want []ptr4) {
	t.Helper()
	var got []ptr4
	for _, g := range seq.groups {
		if len(g.chunks) == 0 || len(g.chunks) > 2*ptrGroupSize {
			t.Fatalf("a group of %d chunks", len(g.chunks))
		}
		if g.first != g.chunks[0].first || g.last != g.chunks[len(g.chunks)-1].last {
			t.Fatalf("a group's first and last are not its chunks'")
		}
		for _, c := range g.chunks {
			if len(c.recs) == 0 || len(c.recs) > 2*ptrChunkSize {
				t.Fatalf("a chunk of %d records", len(c.recs))
			}
			got = append(got, c.recs...)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("sequence of %d records differs from the %d expected", len(got), len(want))
	}
	if seq.owners() != owners(want) {
		t.Fatalf("%d owners, want %d", seq.owners(), owners(want))
	}
	for _, addr := range []uint32{0, 1, 500, 1499, 2999, 3000} {
		it := seq.from(ptr4{addr: addr})
		first, ok := it.next()
		i := slices.IndexFunc(want, func(r ptr4) bool { return r.addr >= addr })
		if ok != (i >= 0) || ok && first != want[i] {
			t.Fatalf("from %d: %v %v, want index %d", addr, first, ok, i)
		}
	}
}

func owners(recs []ptr4) int {
	n := 0
	for i, r := range recs {
		if i == 0 || recs[i-1].addr != r.addr {
			n++
		}
	}
	return n
}
