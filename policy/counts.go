package policy

import "fmt"

// liveKind says what a least-loaded step takes its Service's live load
// values for, and so how it blends them with its handout ledger.
type liveKind uint8

const (
	// liveLevel values are what each Pod carries now (requests in flight,
	// utilisation): the step ranks on them and on the handouts since they
	// were read (BlendedScores), so that within a poll the answers follow
	// the polled load. The default.
	liveLevel liveKind = iota
	// liveCount values count what the answers brought each Pod over a
	// recent window (connections or requests accepted, e.g.
	// increase(x[30s])): the quantity the ledger counts, measured where
	// every hdns replica reads it alike (countScores).
	liveCount
)

// countGain weighs a count's deviation from its Service's mean against the
// ledger's: an endpoint whose count is 10% over the mean ranks as one
// whose ledger is 10% over. All the replicas that read the count tilt
// their rotations alike, so together they give back a deviation within
// about a ledger time constant; a higher gain follows the count's own
// noise (its window's edges, a cache's answer landing just inside or
// outside it).
const countGain = 1.0

// countScores turns ledger values (scores, in the order of live) into
// ledger/mean(ledger) + countGain·(live/meanLive - 1). live holds the fresh
// counts, < 0 where a candidate has none: it ranks by its ledger alone.
//
// The ledger keeps its full weight because it is what keeps replicas
// apart: each ranks first on its own rotation, which the others' answers
// do not move, and the shared count only tilts it. Ranking on the count
// and the handouts since the poll (liveLevel) would start every replica's
// poll from the same order, and they would all answer the same least
// counted Pods until the next poll showed it; through caches, where one
// answer serves a cache's clients for a TTL, that herding is larger than
// the imbalance the count shows. The count corrects what no ledger sees:
// answers that a cache dropped (of its copies of one question sent to
// different replicas, it keeps one answer), and answers that serve more
// clients than others.
func countScores(scores, live []float64, sumLedger, meanLive float64) {
	meanLedger := sumLedger / float64(len(scores))
	for k := range scores {
		if meanLedger > 0 {
			scores[k] /= meanLedger
		}
		if live[k] >= 0 {
			scores[k] += countGain * (live[k]/meanLive - 1)
		}
	}
}

// leastLoadedBuilder builds least-loaded steps: "least-loaded" reads live
// values as levels, "least-loaded=count" as counts (liveKind).
type leastLoadedBuilder struct{}

func (leastLoadedBuilder) Name() string { return "least-loaded" }
func (leastLoadedBuilder) Traits() Traits {
	return Reorders | ReadsLoad | NeedsUpkeep
}
func (leastLoadedBuilder) Build(args string) (Step, error) {
	switch args {
	case "":
		return new(leastLoaded), nil
	case "count":
		return &leastLoaded{kind: liveCount}, nil
	}
	return nil, fmt.Errorf("takes no argument or \"count\" (the load query counts what the answers bring), got %q", args)
}
