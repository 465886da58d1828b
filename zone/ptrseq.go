package zone

import "slices"

// ptrSeq is a persistent sorted sequence of PTR records: a list of
// groups of chunks, each chunk a sorted array of at most 2*ptrChunkSize
// records, each group at most 2*ptrGroupSize chunks, in order. with
// copies the group list, the groups and the chunks its edits touch, and
// shares the others, so that an edit copies a few KiB whatever the
// sequence's length; nothing it returns is modified afterwards, so that
// readers need no lock.
type ptrSeq[R ptrRecord[R]] struct {
	groups []ptrGroup[R]
}

// ptrGroup is a non-empty run of chunks, its first and last record (kept
// beside it, so that searches read one array), and the number of
// distinct addresses in it.
type ptrGroup[R ptrRecord[R]] struct {
	chunks      []ptrChunk[R]
	first, last R
	owners      int
}

// ptrGroupSize is the number of chunks groups are cut to: an edit copies
// about 5 KiB of chunk list per group it touches, and the group list is
// 1/ptrGroupSize of the chunk list. A variable so that tests can cut
// small groups.
var ptrGroupSize = 64

// ptrChunk is a non-empty sorted run of records, its first and last
// (kept beside it, so that searches and counts over the chunk list read
// one array), and the number of distinct addresses in it.
type ptrChunk[R ptrRecord[R]] struct {
	recs        []R
	first, last R
	owners      int
}

// ptrChunkSize is the size chunks are cut to: an edit copies about 4 KiB
// of IPv4 records per chunk it touches.
const ptrChunkSize = 256

func newPTRChunk[R ptrRecord[R]](recs []R) ptrChunk[R] {
	c := ptrChunk[R]{recs: recs, first: recs[0], last: recs[len(recs)-1]}
	for i := range recs {
		if i == 0 || recs[i-1].cmpAddr(recs[i]) != 0 {
			c.owners++
		}
	}
	return c
}

// appendChunks appends recs, sorted, cut into chunks of ptrChunkSize.
func appendChunks[R ptrRecord[R]](chunks []ptrChunk[R], recs []R) []ptrChunk[R] {
	for len(recs) > 0 {
		n := min(len(recs), ptrChunkSize)
		if len(recs) <= 2*ptrChunkSize {
			n = len(recs)
		}
		chunks = append(chunks, newPTRChunk(recs[:n:n]))
		recs = recs[n:]
	}
	return chunks
}

// newPTRSeq returns the sequence of recs, sorted, which it keeps.
func newPTRSeq[R ptrRecord[R]](recs []R) ptrSeq[R] {
	return ptrSeq[R]{groups: appendGroups(nil, appendChunks(nil, recs))}
}

// appendGroups appends chunks, in order, cut into groups of ptrGroupSize.
func appendGroups[R ptrRecord[R]](groups []ptrGroup[R], chunks []ptrChunk[R]) []ptrGroup[R] {
	for len(chunks) > 0 {
		n := min(len(chunks), ptrGroupSize)
		if len(chunks) <= 2*ptrGroupSize {
			n = len(chunks)
		}
		g := ptrGroup[R]{chunks: chunks[:n:n], first: chunks[0].first, last: chunks[n-1].last}
		g.owners = countOwners(g.chunks, func(c ptrChunk[R]) (int, R, R) { return c.owners, c.first, c.last })
		groups = append(groups, g)
		chunks = chunks[n:]
	}
	return groups
}

// countOwners counts the distinct addresses of parts in order, each
// with its count, first and last record: an address across a boundary
// counts once.
func countOwners[P any, R ptrRecord[R]](parts []P, of func(P) (int, R, R)) int {
	n := 0
	var prev R
	for i, p := range parts {
		owners, first, last := of(p)
		n += owners
		if i > 0 && prev.cmpAddr(first) == 0 {
			n--
		}
		prev = last
	}
	return n
}

// ptrIter walks a sequence from a position.
type ptrIter[R ptrRecord[R]] struct {
	groups  []ptrGroup[R]
	g, c, r int
}

func (it *ptrIter[R]) next() (R, bool) {
	for it.g < len(it.groups) {
		chunks := it.groups[it.g].chunks
		for it.c < len(chunks) {
			if recs := chunks[it.c].recs; it.r < len(recs) {
				it.r++
				return recs[it.r-1], true
			}
			it.c, it.r = it.c+1, 0
		}
		it.g, it.c = it.g+1, 0
	}
	var zero R
	return zero, false
}

// firstNotBefore returns the index of the first of n parts whose last
// record's address is not before k's (n when none is).
func firstNotBefore[R ptrRecord[R]](n int, last func(int) R, k R) int {
	lo, hi := 0, n
	for lo < hi {
		if mid := int(uint(lo+hi) >> 1); last(mid).cmpAddr(k) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// from returns an iterator at the first record whose address is k's or
// after it.
func (s *ptrSeq[R]) from(k R) ptrIter[R] {
	it := ptrIter[R]{groups: s.groups}
	it.g = firstNotBefore(len(s.groups), func(i int) R { return s.groups[i].last }, k)
	if it.g == len(s.groups) {
		return it
	}
	chunks := s.groups[it.g].chunks
	it.c = firstNotBefore(len(chunks), func(i int) R { return chunks[i].last }, k)
	recs := chunks[it.c].recs
	it.r = firstNotBefore(len(recs), func(i int) R { return recs[i] }, k)
	return it
}

// owners counts the distinct addresses of the sequence.
func (s *ptrSeq[R]) owners() int {
	return countOwners(s.groups, func(g ptrGroup[R]) (int, R, R) { return g.owners, g.first, g.last })
}

// with returns the sequence with the records of remove taken out and
// those of add put in; both are sorted (comparePTR), remove's records are
// in s, add's are not. s is unchanged.
func (s ptrSeq[R]) with(remove, add []R) ptrSeq[R] {
	if len(remove) == 0 && len(add) == 0 {
		return s
	}
	if len(s.groups) == 0 {
		return newPTRSeq(slices.Clone(add))
	}
	out := make([]ptrGroup[R], 0, len(s.groups)+1)
	next := 0 // the first group not yet in out
	for len(remove) > 0 || len(add) > 0 {
		g := partOf(len(s.groups), func(i int) R { return s.groups[i].last }, remove, add)
		end, last := s.groups[g].last, g == len(s.groups)-1
		rm, ad := cutUpTo(&remove, end, last), cutUpTo(&add, end, last)
		out = append(out, s.groups[next:g]...)
		chunks := chunksWith(s.groups[g].chunks, rm, ad)
		// A group that edits shrank joins its predecessor, so that
		// removals do not leave the list many small groups.
		if n := len(out); n > 0 && len(chunks) < ptrGroupSize/2 && len(out[n-1].chunks)+len(chunks) <= 2*ptrGroupSize {
			chunks = append(slices.Clone(out[n-1].chunks), chunks...)
			out = out[:n-1]
		}
		out = appendGroups(out, chunks)
		next = g + 1
	}
	return ptrSeq[R]{groups: slices.Clip(append(out, s.groups[next:]...))}
}

// chunksWith returns a new list of chunks: those of chunks, a non-empty
// list, with remove's records taken out and add's put in, where remove
// and add belong (all of them, past the last chunk's end, in the last).
// Chunks that the edits do not touch are shared.
func chunksWith[R ptrRecord[R]](chunks []ptrChunk[R], remove, add []R) []ptrChunk[R] {
	out := make([]ptrChunk[R], 0, len(chunks)+1)
	next := 0 // the first chunk not yet in out
	for len(remove) > 0 || len(add) > 0 {
		c := partOf(len(chunks), func(i int) R { return chunks[i].last }, remove, add)
		end, last := chunks[c].last, c == len(chunks)-1
		rm, ad := cutUpTo(&remove, end, last), cutUpTo(&add, end, last)
		out = append(out, chunks[next:c]...)
		recs := edited(chunks[c].recs, rm, ad)
		// A chunk that edits shrank joins its predecessor, so that
		// removals do not leave the list many small chunks.
		if n := len(out); n > 0 && len(recs) < ptrChunkSize/2 && len(out[n-1].recs)+len(recs) <= 2*ptrChunkSize {
			recs = append(slices.Clone(out[n-1].recs), recs...)
			out = out[:n-1]
		}
		out = appendChunks(out, recs)
		next = c + 1
	}
	return slices.Clip(append(out, chunks[next:]...))
}

// partOf returns the part (of n, each ending with last(i)) where the
// first of remove and add belongs: the first whose last record is not
// before it, or the last part.
func partOf[R ptrRecord[R]](n int, last func(int) R, remove, add []R) int {
	k := cmpFirst(remove, add)
	lo, hi := 0, n
	for lo < hi {
		if mid := int(uint(lo+hi) >> 1); comparePTR(last(mid), k) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return min(lo, n-1)
}

// cmpFirst returns the first record of a and b, either non-empty.
func cmpFirst[R ptrRecord[R]](a, b []R) R {
	switch {
	case len(a) == 0:
		return b[0]
	case len(b) == 0 || comparePTR(a[0], b[0]) <= 0:
		return a[0]
	}
	return b[0]
}

// cutUpTo cuts from the front of *recs those not after end, or all of
// them when all is set.
func cutUpTo[R ptrRecord[R]](recs *[]R, end R, all bool) []R {
	n := len(*recs)
	if !all {
		n = 0
		for n < len(*recs) && comparePTR((*recs)[n], end) <= 0 {
			n++
		}
	}
	part := (*recs)[:n]
	*recs = (*recs)[n:]
	return part
}

// edited returns a new sorted array: recs without remove, merged with
// add.
func edited[R ptrRecord[R]](recs, remove, add []R) []R {
	out := make([]R, 0, len(recs)-len(remove)+len(add))
	for _, r := range recs {
		if len(remove) > 0 && remove[0] == r {
			remove = remove[1:]
			continue
		}
		for len(add) > 0 && comparePTR(add[0], r) < 0 {
			out, add = append(out, add[0]), add[1:]
		}
		out = append(out, r)
	}
	return append(out, add...)
}
