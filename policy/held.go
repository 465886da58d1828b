package policy

// holdCounts counts the Services that hold each key, and lists the keys
// whose count fell to zero since the last sweep.
type holdCounts struct {
	chains   map[chainKey]int32
	ledgers  map[uint64]int32
	lives    map[liveKey]int32
	series   map[[2]string]int32
	released heldKeys
}

func newHoldCounts() holdCounts {
	return holdCounts{chains: make(map[chainKey]int32), ledgers: make(map[uint64]int32),
		lives: make(map[liveKey]int32), series: make(map[[2]string]int32)}
}

// add adds d to the counts of k's keys.
func (hc *holdCounts) add(k *heldKeys, d int32) {
	count(hc.chains, k.chains, d, &hc.released.chains)
	count(hc.ledgers, k.ledgers, d, &hc.released.ledgers)
	count(hc.lives, k.lives, d, &hc.released.lives)
	count(hc.series, k.series, d, &hc.released.series)
}

// replace counts cur's keys in place of prev's: the same counts, and the
// same keys released, as add(cur, 1) then add(prev, -1).
func (hc *holdCounts) replace(cur, prev *heldKeys) {
	recount(hc.chains, cur.chains, prev.chains, &hc.released.chains)
	recount(hc.ledgers, cur.ledgers, prev.ledgers, &hc.released.ledgers)
	recount(hc.lives, cur.lives, prev.lives, &hc.released.lives)
	recount(hc.series, cur.series, prev.series, &hc.released.series)
}

// recount counts cur's keys up and prev's down in m, skipping the prefix
// and suffix the two lists share: each shared key would be counted up and
// down again, which leaves its count as it is and cannot release it.
func recount[K comparable](m map[K]int32, cur, prev []K, released *[]K) {
	n := min(len(cur), len(prev))
	i := 0
	for i < n && cur[i] == prev[i] {
		i++
	}
	cur, prev = cur[i:], prev[i:]
	j := 0
	for j < len(cur) && j < len(prev) && cur[len(cur)-1-j] == prev[len(prev)-1-j] {
		j++
	}
	count(m, cur[:len(cur)-j], 1, released)
	count(m, prev[:len(prev)-j], -1, released)
}

func count[K comparable](m map[K]int32, keys []K, d int32, released *[]K) {
	for _, k := range keys {
		if n := m[k] + d; n > 0 {
			m[k] = n
			continue
		}
		delete(m, k)
		*released = append(*released, k)
	}
}
