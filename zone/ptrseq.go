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

// ptrChunk is a non-empty sorted run of records and the number of
// distinct addresses in it.
type ptrChunk[R ptrRecord[R]] struct {
	recs   []R
	owners int
}

// ptrChunkSize is the size chunks are cut to: an edit copies about 4 KiB
// of IPv4 records per chunk it touches.
const ptrChunkSize = 256

func newPTRChunk[R ptrRecord[R]](recs []R) ptrChunk[R] {
	c := ptrChunk[R]{recs: recs}
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
		if c.recs[len(c.recs)-1].cmpAddr(k) < 0 {
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
		if i > 0 && s.chunks[i-1].recs[len(s.chunks[i-1].recs)-1].cmpAddr(c.recs[0]) == 0 {
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
	for i, c := range s.chunks {
		last := i == len(s.chunks)-1
		rm, ad := s.take(&remove, c, last), s.take(&add, c, last)
		if len(rm) == 0 && len(ad) == 0 {
			out = append(out, c)
			continue
		}
		out = appendChunks(out, edited(c.recs, rm, ad))
	}
	return ptrSeq[R]{chunks: slices.Clip(out)}
}

// take cuts from the front of *recs those that belong in chunk c: up to
// its last record, or all of them for the last chunk.
func (s ptrSeq[R]) take(recs *[]R, c ptrChunk[R], last bool) []R {
	if last {
		all := *recs
		*recs = nil
		return all
	}
	end := c.recs[len(c.recs)-1]
	n := 0
	for n < len(*recs) && comparePTR((*recs)[n], end) <= 0 {
		n++
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
