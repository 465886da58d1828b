//go:build bench

package balance

import (
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestUsedAnswers checks the grouping of connections into cached answers
// and the floors computed from them, without a control plane.
func TestUsedAnswers(t *testing.T) {
	a, b := netip.MustParseAddr("127.55.0.1"), netip.MustParseAddr("127.55.1.1")
	nodeOf := map[netip.Addr]int{a: 0, b: 1}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	events := []event{
		{at: ms(0), backend: 0, from: a},
		{at: ms(10), backend: 1, from: b},
		{at: ms(990), backend: 0, from: a},  // still node 0's first answer
		{at: ms(1005), backend: 2, from: a}, // node 0's cache renewed
		{at: ms(1015), backend: 0, from: a}, // a late connection of its first answer
		{at: ms(1020), backend: 1, from: b},
		{at: ms(1300), backend: 0, from: a}, // too late: a third answer
		{at: ms(2400), backend: 1, from: b}, // past TTL and lateConn: node 1's second answer
	}
	got := usedAnswers(events, nodeOf, time.Second, true)
	want := []usedAnswer{{0, 3}, {1, 2}, {2, 1}, {0, 1}, {1, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("usedAnswers = %v, want %v", got, want)
	}
	if direct := usedAnswers(events, nodeOf, time.Second, false); len(direct) != len(events) {
		t.Errorf("direct: %d answers, want one per connection (%d)", len(direct), len(events))
	}
	if f := answerFloor(320, 50); math.Abs(f-7/6.4) > 1e-9 {
		t.Errorf("answerFloor(320, 50) = %v, want 7/6.4", f)
	}
	if f := answerFloor(300, 50); f != 1 {
		t.Errorf("answerFloor(300, 50) = %v, want 1", f)
	}
	equal := make([]usedAnswer, 320)
	for i := range equal {
		equal[i] = usedAnswer{conns: 10}
	}
	if d := randomDeal(equal, 50); math.Abs(d-7/6.4) > 1e-9 {
		t.Errorf("randomDeal of equal answers = %v, want the floor 7/6.4", d)
	}
	if d := inTurnDeal(equal, 50); math.Abs(d-7/6.4) > 1e-9 {
		t.Errorf("inTurnDeal of equal answers = %v, want the floor 7/6.4", d)
	}
	// Heavy and light answers alternating: in turn over two pods, one
	// gets all the heavy ones.
	alternating := []usedAnswer{{conns: 3}, {conns: 1}, {conns: 3}, {conns: 1}}
	if d := inTurnDeal(alternating, 2); d != 1.5 {
		t.Errorf("inTurnDeal of alternating answers = %v, want 6/4", d)
	}
}
