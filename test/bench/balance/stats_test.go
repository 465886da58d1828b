//go:build bench

package balance

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// spread is the balance of connection counts over a set of backends.
type spread struct {
	Total      int
	MaxOverAvg float64 // max / mean
	CV         float64 // population standard deviation / mean
	Jain       float64 // (Σx)² / (n Σx²): 1 is perfect, 1/n is all on one
}

// measure computes spread over counts (one per backend, zeros included).
func measure(counts []int) spread {
	n := len(counts)
	if n == 0 {
		return spread{}
	}
	var sum, sumSq float64
	most := 0
	for _, c := range counts {
		sum += float64(c)
		sumSq += float64(c) * float64(c)
		most = max(most, c)
	}
	s := spread{Total: int(sum)}
	if sum == 0 {
		return s
	}
	mean := sum / float64(n)
	s.MaxOverAvg = float64(most) / mean
	s.CV = math.Sqrt(max(sumSq/float64(n)-mean*mean, 0)) / mean
	s.Jain = sum * sum / (float64(n) * sumSq)
	return s
}

// event is one accepted connection: when (since the scenario began), on
// which backend, and from which client address.
type event struct {
	at      time.Duration
	backend int
	from    netip.Addr
}

// countsIn returns the connections per backend (0..n-1) accepted in
// [from, to).
func countsIn(events []event, n int, from, to time.Duration) []int {
	counts := make([]int, n)
	for _, e := range events {
		if e.at >= from && e.at < to && e.backend < n {
			counts[e.backend]++
		}
	}
	return counts
}

// convergence returns how long after t0 the backend newest (the pod added
// at t0) first has a connection count within 10% of the mean of all n
// backends, over the sliding window [t-window, t], evaluated every step
// from t0 to end. ok is false when it never is.
func convergence(events []event, n, newest int, t0, end, window, step time.Duration) (time.Duration, bool) {
	for t := t0 + step; t <= end; t += step {
		counts := countsIn(events, n, t-window, t)
		total := 0
		for _, c := range counts {
			total += c
		}
		if total < 2*n {
			continue // too few connections in the window to tell
		}
		mean := float64(total) / float64(n)
		if math.Abs(float64(counts[newest])-mean) <= 0.1*mean {
			return t - t0, true
		}
	}
	return 0, false
}

// result is one row of the report.
type result struct {
	N        int
	Path     string
	Client   string
	Policy   string
	Steady   spread
	Counts   []int // steady window, sorted descending
	Errors   int   // lookups or connections that failed
	Converge string
	// FirstConn is when the new pod got its first connection after it
	// was Ready in the API: EndpointSlice, informer and cache latency.
	FirstConn string
	// Answers is max/mean of hdns's first-place handouts per pod in the
	// steady window (first=1 policies only; -1 otherwise): what hdns
	// balanced, against which Steady shows what the clients did.
	Answers  float64
	ShareEnd float64 // the new pod's share of the last window / mean share
}

// table renders results as a markdown table.
func table(results []result) string {
	var b strings.Builder
	b.WriteString("| N | path | client | policy | conns | max/mean | CV | Jain | hdns answers max/mean | scale-up: 1st conn | within 10% of mean | share/mean, last window | errors | per-backend (sorted) |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range results {
		counts := r.Counts
		shown := fmt.Sprint(counts)
		if len(counts) > 12 {
			shown = fmt.Sprintf("%v … %v", counts[:4], counts[len(counts)-4:])
		}
		answers := "—"
		if r.Answers >= 0 {
			answers = fmt.Sprintf("%.2f", r.Answers)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %d | %.2f | %.3f | %.3f | %s | %s | %s | %.2f | %d | %s |\n",
			r.N, r.Path, r.Client, r.Policy, r.Steady.Total, r.Steady.MaxOverAvg, r.Steady.CV, r.Steady.Jain,
			answers, r.FirstConn, r.Converge, r.ShareEnd, r.Errors, shown)
	}
	return b.String()
}

// sortedDesc returns a sorted copy of counts, largest first.
func sortedDesc(counts []int) []int {
	c := slices.Clone(counts)
	slices.Sort(c)
	slices.Reverse(c)
	return c
}
