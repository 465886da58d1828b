package zone

import (
	"hash/maphash"
	"math/bits"
)

// nameTable maps lower-case FQDNs to their stored Nodes. It is persistent:
// with replaces a copy that shares every part it does not change with the
// original, which never changes, so that a Snapshot built from the previous
// one by a few edits costs those edits, not the zone.
//
// It is a hash table of two levels: a directory of pages, each page an
// array of buckets, each bucket a short list of entries. An edit copies the
// directory (a pointer per pageSize buckets), the pages it touches and
// the buckets it touches. Lookups hash once and read three arrays, without
// locks or allocations.
type nameTable struct {
	seed  maphash.Seed
	dir   []*namePage // len a power of two
	count int
}

// pageSize is the number of buckets per page: a page copy is 1.5 KiB,
// and the directory of a table sized for n names n/4 bytes. An edit of
// one Service copies about ten pages (its names and the apexes').
const pageSize = 32

// pageBits is log2(pageSize): the hash bits that pick a bucket in its
// page.
const pageBits = 5

type namePage [pageSize]nameBucket

// nameBucket holds the entries of one hash bucket: the first inline, so
// that a lookup in a bucket of one (the usual load) reads no more array.
type nameBucket struct {
	first nameEntry
	more  []nameEntry
}

type nameEntry struct {
	name string
	node *Node
}

// maxLoad is the mean number of entries per bucket past which with
// doubles the table (copying all of it, which the growth amortizes).
const maxLoad = 4

// newNameTable returns an empty table with room for about n names.
func newNameTable(seed maphash.Seed, n int) *nameTable {
	pages := 1
	if n > pageSize {
		pages = 1 << bits.Len(uint((n-1)/pageSize))
	}
	t := &nameTable{seed: seed, dir: make([]*namePage, pages)}
	for i := range t.dir {
		t.dir[i] = new(namePage)
	}
	return t
}

// bucket returns where name's entry is: the page index and the bucket in
// it.
func (t *nameTable) bucket(name string) (page, slot int) {
	h := maphash.String(t.seed, name)
	return int(h>>pageBits) & (len(t.dir) - 1), int(h & (pageSize - 1))
}

// get returns name's node, or nil.
func (t *nameTable) get(name string) *Node {
	p, s := t.bucket(name)
	b := &t.dir[p][s]
	if b.first.name == name {
		return b.first.node
	}
	for _, e := range b.more {
		if e.name == name {
			return e.node
		}
	}
	return nil
}

// each calls f for every entry, in no particular order.
func (t *nameTable) each(f func(name string, n *Node)) {
	for _, p := range t.dir {
		for _, b := range p {
			if b.first.node != nil {
				f(b.first.name, b.first.node)
			}
			for _, e := range b.more {
				f(e.name, e.node)
			}
		}
	}
}

// with returns a table that maps edits' names to their nodes, or removes
// them where the node is nil, and is t everywhere else. t is unchanged.
func (t *nameTable) with(edits map[string]*Node) *nameTable {
	grown := t.count
	for _, n := range edits {
		if n != nil {
			grown++
		}
	}
	if grown > maxLoad*pageSize*len(t.dir) {
		return t.rehash(edits, grown)
	}
	out := &nameTable{seed: t.seed, dir: append([]*namePage(nil), t.dir...), count: t.count}
	copied := make(map[int]bool)
	for name, n := range edits {
		p, s := out.bucket(name)
		if !copied[p] {
			page := *out.dir[p]
			out.dir[p] = &page
			copied[p] = true
		}
		out.dir[p][s] = out.edit(&out.dir[p][s], name, n)
	}
	return out
}

// edit returns a new bucket: b with name's entry set to n, or removed
// when n is nil. b is unchanged.
func (t *nameTable) edit(b *nameBucket, name string, n *Node) nameBucket {
	var all []nameEntry
	if b.first.node != nil {
		all = append(all, b.first)
	}
	all = append(all, b.more...)
	out := make([]nameEntry, 0, len(all)+1)
	for _, e := range all {
		if e.name != name {
			out = append(out, e)
		} else {
			t.count--
		}
	}
	if n != nil {
		out = append(out, nameEntry{name, n})
		t.count++
	}
	return bucketOf(out)
}

// bucketOf makes a bucket of entries, which it may keep.
func bucketOf(entries []nameEntry) nameBucket {
	switch len(entries) {
	case 0:
		return nameBucket{}
	case 1:
		return nameBucket{first: entries[0]}
	}
	return nameBucket{first: entries[0], more: entries[1:]}
}

// rehash returns a new table of t's entries with edits applied, sized for
// n entries.
func (t *nameTable) rehash(edits map[string]*Node, n int) *nameTable {
	out := newNameTable(t.seed, n)
	all := make(map[string]*Node, n)
	t.each(func(name string, node *Node) { all[name] = node })
	for name, node := range edits {
		if node == nil {
			delete(all, name)
		} else {
			all[name] = node
		}
	}
	out.fill(all)
	return out
}

// fill adds names to a new table, which nothing else has seen yet.
func (t *nameTable) fill(names map[string]*Node) {
	for name, n := range names {
		p, s := t.bucket(name)
		if b := &t.dir[p][s]; b.first.node == nil {
			b.first = nameEntry{name, n}
		} else {
			b.more = append(b.more, nameEntry{name, n})
		}
	}
	t.count += len(names)
}
