package zone

import "slices"

// ptrSeq is a persistent sorted sequence of PTR records: a list of
// chunks, each a sorted array of at most 2*ptrChunkSize records, in
// order. with copies the list and the chunks its edits touch, and shares
// the others; nothing it returns is modified afterwards, so that readers
// need no lock.
type ptrSeq[R ptrRecord[R]] struct {
	chunks []ptrChunk[R]
}

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

// ptrIter walks a sequence from a position.
type ptrIter[R ptrRecord[R]] struct {
	chunks []ptrChunk[R]
	c, r   int
}

func (it *ptrIter[R]) next() (R, bool) {
	for it.c < len(it.chunks) {
		if recs := it.chunks[it.c].recs; it.r < len(recs) {
			it.r++
			return recs[it.r-1], true
		}
		it.c, it.r = it.c+1, 0
	}
	var zero R
	return zero, false
}

// from returns an iterator at the first record whose address is k's or
// after it.
func (s *ptrSeq[R]) from(k R) ptrIter[R] {
	c, _ := slices.BinarySearchFunc(s.chunks, k, func(c ptrChunk[R], k R) int {
		if c.last.cmpAddr(k) < 0 {
			return -1
		}
		return 1
	})
	it := ptrIter[R]{chunks: s.chunks, c: c}
	if c < len(s.chunks) {
		it.r, _ = slices.BinarySearchFunc(s.chunks[c].recs, k, func(r, k R) int {
			if r.cmpAddr(k) < 0 {
				return -1
			}
			return 1
		})
	}
	return it
}

// owners counts the distinct addresses of the sequence.
func (s *ptrSeq[R]) owners() int {
	n := 0
	for i, c := range s.chunks {
		n += c.owners
		if i > 0 && s.chunks[i-1].last.cmpAddr(c.first) == 0 {
			n--
		}
	}
	return n
}

// with returns the sequence with the records of remove taken out and
// those of add put in; both are sorted (comparePTR), remove's records are
// in s, add's are not. s is unchanged.
func (s ptrSeq[R]) with(remove, add []R) ptrSeq[R] {
	if len(remove) == 0 && len(add) == 0 {
		return s
	}
	if len(s.chunks) == 0 {
		return ptrSeq[R]{chunks: appendChunks(nil, slices.Clone(add))}
	}
	out := make([]ptrChunk[R], 0, len(s.chunks)+1)
	next := 0 // the first chunk not yet in out
	for len(remove) > 0 || len(add) > 0 {
		c := s.chunkOf(remove, add)
		end, last := s.chunks[c].last, c == len(s.chunks)-1
		rm, ad := cutUpTo(&remove, end, last), cutUpTo(&add, end, last)
		out = append(out, s.chunks[next:c]...)
		recs := edited(s.chunks[c].recs, rm, ad)
		// A chunk that edits shrank joins its predecessor, so that
		// removals do not leave the list many small chunks.
		if n := len(out); n > 0 && len(recs) < ptrChunkSize/2 && len(out[n-1].recs)+len(recs) <= 2*ptrChunkSize {
			recs = append(slices.Clone(out[n-1].recs), recs...)
			out = out[:n-1]
		}
		out = appendChunks(out, recs)
		next = c + 1
	}
	return ptrSeq[R]{chunks: slices.Clip(append(out, s.chunks[next:]...))}
}

// chunkOf returns the chunk where the first of remove and add belongs:
// the first whose last record is not before it, or the last chunk.
func (s ptrSeq[R]) chunkOf(remove, add []R) int {
	k := cmpFirst(remove, add)
	c, _ := slices.BinarySearchFunc(s.chunks, k, func(c ptrChunk[R], k R) int {
		if comparePTR(c.last, k) < 0 {
			return -1
		}
		return 1
	})
	return min(c, len(s.chunks)-1)
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
