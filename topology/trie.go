package topology

import "math/bits"

// The exact-address index is a persistent hash trie of fixed depth: three
// levels of 64 slots chosen by 18 bits of the address's hash, then a
// bucket of entries. Readers walk a published root without locks. The
// writer copies, within one batch, each array and bucket on the path to a
// change the first time it touches it (its gen is older than the batch's)
// and edits the copy in place afterwards, so that a batch costs a few
// small copies per address it changes, whatever the index holds, and a
// published version is never written again.

const (
	fanBits = 6
	fanOut  = 1 << fanBits
	fanMask = fanOut - 1
)

// addrKey is an address's 16 bytes, IPv4 as IPv4-mapped IPv6.
type addrKey [16]byte

// hit is what the index says of one address.
type hit struct {
	node string
	// zone is the zone an endpoint's slice gave, for when the node's own
	// labels do not say (the Node is gone, or has no label).
	zone string
	by   Method
}

type entry struct {
	key addrKey
	hit hit
}

type bucket struct {
	gen     uint64
	entries []entry
}

type level3 struct {
	gen  uint64
	kids [fanOut]*bucket
}

type level2 struct {
	gen  uint64
	kids [fanOut]*level3
}

type level1 struct {
	gen  uint64
	kids [fanOut]*level2
}

// hashKey mixes the key's two halves; the seed keeps the slots of a
// cluster's addresses unpredictable from outside.
func hashKey(k *addrKey, seed uint64) uint64 {
	lo := uint64(k[0]) | uint64(k[1])<<8 | uint64(k[2])<<16 | uint64(k[3])<<24 |
		uint64(k[4])<<32 | uint64(k[5])<<40 | uint64(k[6])<<48 | uint64(k[7])<<56
	hi := uint64(k[8]) | uint64(k[9])<<8 | uint64(k[10])<<16 | uint64(k[11])<<24 |
		uint64(k[12])<<32 | uint64(k[13])<<40 | uint64(k[14])<<48 | uint64(k[15])<<56
	h := (lo ^ seed) * 0x9e3779b97f4a7c15
	h ^= bits.RotateLeft64(hi^seed, 31) * 0xc2b2ae3d27d4eb4f
	return h ^ h>>29
}

// get returns the hit of k in the trie rooted at root.
func get(root *level1, k *addrKey, seed uint64) (hit, bool) {
	if root == nil {
		return hit{}, false
	}
	h := hashKey(k, seed)
	l2 := root.kids[h&fanMask]
	if l2 == nil {
		return hit{}, false
	}
	l3 := l2.kids[h>>fanBits&fanMask]
	if l3 == nil {
		return hit{}, false
	}
	b := l3.kids[h>>(2*fanBits)&fanMask]
	if b == nil {
		return hit{}, false
	}
	for i := range b.entries {
		if b.entries[i].key == *k {
			return b.entries[i].hit, true
		}
	}
	return hit{}, false
}

// trieWriter edits a trie copy-on-write. root is the newest version; gen
// is the current batch's, and every array or bucket with that gen was
// copied within the batch and is not published yet.
type trieWriter struct {
	root *level1
	gen  uint64
	seed uint64
	size int
}

// put sets k to h, or removes k when ok is false.
func (w *trieWriter) put(k *addrKey, h hit, ok bool) {
	hash := hashKey(k, w.seed)
	if w.root == nil || w.root.gen != w.gen {
		r := &level1{gen: w.gen}
		if w.root != nil {
			r.kids = w.root.kids
		}
		w.root = r
	}
	i1, i2, i3 := hash&fanMask, hash>>fanBits&fanMask, hash>>(2*fanBits)&fanMask
	l2 := w.root.kids[i1]
	if l2 == nil || l2.gen != w.gen {
		c := &level2{gen: w.gen}
		if l2 != nil {
			c.kids = l2.kids
		}
		l2, w.root.kids[i1] = c, c
	}
	l3 := l2.kids[i2]
	if l3 == nil || l3.gen != w.gen {
		c := &level3{gen: w.gen}
		if l3 != nil {
			c.kids = l3.kids
		}
		l3, l2.kids[i2] = c, c
	}
	l3.kids[i3] = w.putBucket(l3.kids[i3], k, h, ok)
}

// putBucket returns b (or its copy) with k set or removed; nil when it
// ends empty.
func (w *trieWriter) putBucket(b *bucket, k *addrKey, h hit, ok bool) *bucket {
	if b == nil || b.gen != w.gen {
		c := &bucket{gen: w.gen}
		if b != nil {
			c.entries = make([]entry, len(b.entries), len(b.entries)+1)
			copy(c.entries, b.entries)
		}
		b = c
	}
	for i := range b.entries {
		if b.entries[i].key != *k {
			continue
		}
		if ok {
			b.entries[i].hit = h
		} else {
			last := len(b.entries) - 1
			b.entries[i] = b.entries[last]
			b.entries = b.entries[:last]
			w.size--
		}
		return nonEmpty(b)
	}
	if ok {
		b.entries = append(b.entries, entry{key: *k, hit: h})
		w.size++
	}
	return nonEmpty(b)
}

func nonEmpty(b *bucket) *bucket {
	if len(b.entries) == 0 {
		return nil
	}
	return b
}
