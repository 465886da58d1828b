package policy

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRecountMatchesFullCount checks that counting only what lies between
// the common prefix and suffix of a Service's current and previous keys
// leaves the same counts, and releases the same keys in the same order, as
// counting every current key up and every previous key down.
func TestRecountMatchesFullCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		full, trimmed := map[uint64]int32{}, map[uint64]int32{}
		// Other Services hold some of the keys too.
		for k := range uint64(rng.IntN(8)) {
			full[k], trimmed[k] = 1, 1
		}
		prev := randomKeys(rng, rng.IntN(30))
		for _, k := range prev {
			full[k]++
			trimmed[k]++
		}
		cur := editKeys(rng, prev)
		var fullReleased, trimmedReleased []uint64
		count(full, cur, 1, &fullReleased)
		count(full, prev, -1, &fullReleased)
		recount(trimmed, cur, prev, &trimmedReleased)
		if !maps.Equal(full, trimmed) {
			t.Fatalf("round %d: prev %v cur %v: counts %v, want %v", round, prev, cur, trimmed, full)
		}
		if !slices.Equal(fullReleased, trimmedReleased) {
			t.Fatalf("round %d: prev %v cur %v: released %v, want %v", round, prev, cur, trimmedReleased, fullReleased)
		}
	}
}

func randomKeys(rng *rand.Rand, n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = uint64(rng.IntN(12)) // small range: repeated keys, as one per zone
	}
	return keys
}

// editKeys returns keys with a few endpoints removed, inserted or replaced,
// or keys unchanged, or a list unrelated to keys.
func editKeys(rng *rand.Rand, keys []uint64) []uint64 {
	out := slices.Clone(keys)
	switch rng.IntN(5) {
	case 0:
		return out
	case 1:
		return randomKeys(rng, rng.IntN(30))
	}
	for range 1 + rng.IntN(3) {
		i := rng.IntN(len(out) + 1)
		switch op := rng.IntN(3); {
		case op == 0 && i < len(out):
			out = slices.Delete(out, i, i+1)
		case op == 1 && i < len(out):
			out[i] = uint64(rng.IntN(12))
		default:
			out = slices.Insert(out, i, uint64(rng.IntN(12)))
		}
	}
	return out
}
