package zone

import (
	"fmt"
	"hash/maphash"
	"testing"
)

// BenchmarkNameLookup compares a lookup in the persistent name table with
// one in a Go map of the same names, half hits and half misses (a name
// below a Service's, as for an endpoint's own name): the answer path does
// one or two per question.
func BenchmarkNameLookup(b *testing.B) {
	m := map[string]*Node{}
	for i := range 6000 {
		m[fmt.Sprintf("svc-%d.team-%d.svc.cluster.local.", i, i%50)] = &Node{}
	}
	t := newNameTable(maphash.MakeSeed(), len(m))
	t.fill(m)
	var q []string
	for i := range 6000 {
		q = append(q, fmt.Sprintf("svc-%d.team-%d.svc.cluster.local.", i, i%50), fmt.Sprintf("nope.svc-%d.team-%d.svc.cluster.local.", i, i%50))
	}
	b.Run("map", func(b *testing.B) {
		i := 0
		for b.Loop() {
			_ = m[q[i%len(q)]]
			i++
		}
	})
	b.Run("table", func(b *testing.B) {
		i := 0
		for b.Loop() {
			_ = t.get(q[i%len(q)])
			i++
		}
	})
}

// TestNameTableEdits: a table edited many times, growing past its size
// and shrinking, maps what a Go map edited the same way maps, and the
// tables it was made from keep their own.
func TestNameTableEdits(t *testing.T) {
	want := map[string]*Node{}
	table := newNameTable(maphash.MakeSeed(), 0)
	type version struct {
		table *nameTable
		want  map[string]*Node
	}
	var old []version
	for round := range 60 {
		edits := map[string]*Node{}
		for i := range 100 {
			name := fmt.Sprintf("n%d.", (round*37+i*11)%2500)
			if (round+i)%5 == 0 {
				edits[name] = nil
			} else {
				edits[name] = &Node{}
			}
		}
		table = table.with(edits)
		want = cloneNames(want)
		for name, n := range edits {
			if n == nil {
				delete(want, name)
			} else {
				want[name] = n
			}
		}
		old = append(old, version{table, want})
	}
	for i, v := range old {
		if v.table.count != len(v.want) {
			t.Fatalf("version %d counts %d names, want %d", i, v.table.count, len(v.want))
		}
		for name, n := range v.want {
			if v.table.get(name) != n {
				t.Fatalf("version %d: %s has another node", i, name)
			}
		}
		seen := 0
		v.table.each(func(name string, n *Node) {
			seen++
			if v.want[name] != n {
				t.Fatalf("version %d holds %s, which it should not", i, name)
			}
		})
		if seen != len(v.want) {
			t.Fatalf("version %d: each saw %d names, want %d", i, seen, len(v.want))
		}
	}
	if len(table.dir) < 4 {
		t.Errorf("the table did not grow: %d pages for %d names", len(table.dir), table.count)
	}
}

func cloneNames(m map[string]*Node) map[string]*Node {
	out := make(map[string]*Node, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
