// Package rrl owns response rate limiting (RRL) of UDP replies, with the
// semantics of BIND's and Knot's: each client prefix has an account per
// kind of reply, credited its rate every second and debited one per
// reply; a reply on an account in debt is dropped, except every Slip-th,
// which goes out as its question alone with TC set, so that a real client
// asks again over TCP while a spoofed victim gets no more bytes than the
// query. TCP replies are never limited: TCP proves the source address.
//
// Accounts live in a fixed table of atomic words indexed by a keyed hash:
// no lock, no allocation per reply. It reads replies as packed bytes: of
// hdns it imports server/wire alone, never answer, zone, policy or the
// server package, which calls it.
package rrl

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/hdns-dev/hdns/server/wire"
)

// Config says how replies are limited. The zero value of each field but
// ResponsesPerSecond is its documented default.
type Config struct {
	// ResponsesPerSecond is the rate of non-error replies (NOERROR, with
	// or without records) one client prefix gets for one question name
	// and type. It must be positive.
	ResponsesPerSecond int
	// ErrorsPerSecond is the rate of error replies (NXDOMAIN, REFUSED,
	// FORMERR and every other rcode) one client prefix gets, whatever
	// the name; 0 means ResponsesPerSecond.
	ErrorsPerSecond int
	// Window bounds the debt of an account to Window × its rate, so that
	// a client is answered again at most Window after its flood stops;
	// whole seconds, 0 means 15s.
	Window time.Duration
	// Slip: every Slip-th limited reply is sent as its question alone with
	// TC set; the others are dropped. 0 drops them all.
	Slip int
	// IPv4PrefixLen and IPv6PrefixLen group client addresses into the
	// prefixes that share accounts; 0 means 24 and 56.
	IPv4PrefixLen, IPv6PrefixLen int
	// Accounts is the size of the table, rounded up to a power of two;
	// 0 means 65536. Accounts whose keys collide in it take the slot over
	// from each other, starting afresh.
	Accounts int
	// Metrics, when set, counts limited and slipped replies.
	Metrics *Metrics
}

// Limiter limits UDP replies by Config. It is safe for concurrent use.
type Limiter struct {
	responses, errs int64
	floor           [2]int64 // the lowest balance, per kind
	slip            uint32
	v4, v6          int
	seed            maphash.Seed
	start           time.Time
	// now is the time in seconds since start; a test sets it.
	now     func() uint64
	metrics *Metrics
	mask    uint64
	table   []account
}

// An account's state is one word: a tag of its key, the second of its
// last debit (since the Limiter's start, modulo 2^20: 12 days) and its
// balance, offset to be unsigned.
const (
	balanceBits = 24
	secondBits  = 20
	tagShift    = balanceBits + secondBits
	balanceBias = 1 << (balanceBits - 1)
	secondMask  = 1<<secondBits - 1
	balanceMask = 1<<balanceBits - 1
)

// account is one slot of the table: its state, and the count of limited
// replies that decides which slip.
type account struct {
	state   atomic.Uint64
	limited atomic.Uint32
}

// kinds of reply, each with its own rate.
const (
	kindResponse = iota
	kindError
)

// withDefaults is c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.ErrorsPerSecond == 0 {
		c.ErrorsPerSecond = c.ResponsesPerSecond
	}
	if c.Window == 0 {
		c.Window = 15 * time.Second
	}
	if c.IPv4PrefixLen == 0 {
		c.IPv4PrefixLen = 24
	}
	if c.IPv6PrefixLen == 0 {
		c.IPv6PrefixLen = 56
	}
	if c.Accounts == 0 {
		c.Accounts = 1 << 16
	}
	return c
}

// Check reports what in c New would refuse.
func (c Config) Check() error {
	c = c.withDefaults()
	window := int64(c.Window / time.Second)
	switch {
	case c.ResponsesPerSecond <= 0 || c.ErrorsPerSecond < 0:
		return errors.New("rrl: the rates must be positive")
	case window < 1:
		return fmt.Errorf("rrl: window %v is under a second", c.Window)
	case int64(max(c.ResponsesPerSecond, c.ErrorsPerSecond))*(window+1) >= balanceBias:
		return fmt.Errorf("rrl: rate × window must stay under %d", balanceBias)
	case c.Slip < 0:
		return fmt.Errorf("rrl: slip %d is negative", c.Slip)
	case c.IPv4PrefixLen < 0 || c.IPv4PrefixLen > 32 || c.IPv6PrefixLen < 0 || c.IPv6PrefixLen > 128:
		return fmt.Errorf("rrl: prefix lengths /%d and /%d out of range", c.IPv4PrefixLen, c.IPv6PrefixLen)
	case c.Accounts < 1 || c.Accounts > 1<<24:
		return fmt.Errorf("rrl: %d accounts, want 1 to 2^24", c.Accounts)
	}
	return nil
}

// New returns a Limiter for c.
func New(c Config) (*Limiter, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	window := int64(c.Window / time.Second)
	size := 1
	for size < c.Accounts {
		size <<= 1
	}
	l := &Limiter{
		responses: int64(c.ResponsesPerSecond), errs: int64(c.ErrorsPerSecond),
		slip: uint32(c.Slip), v4: c.IPv4PrefixLen, v6: c.IPv6PrefixLen,
		seed: maphash.MakeSeed(), start: time.Now(), metrics: c.Metrics,
		mask: uint64(size - 1), table: make([]account, size),
	}
	l.floor = [2]int64{-window * l.responses, -window * l.errs}
	l.now = func() uint64 { return uint64(time.Since(l.start) / time.Second) }
	return l, nil
}

// Limit returns what goes to client for reply, a packed UDP reply: reply
// itself, reply cut in place to its question with TC set (a slip), or
// nil for none. A nil *Limiter returns reply.
func (l *Limiter) Limit(client netip.Addr, reply []byte) []byte {
	if l == nil || len(reply) < wire.HeaderLen {
		return reply
	}
	key, kind := l.key(client, reply)
	rate := l.responses
	if kind == kindError {
		rate = l.errs
	}
	a := &l.table[key&l.mask]
	if l.debit(a, key>>tagShift, rate, l.floor[kind]) >= 0 {
		return reply
	}
	l.metrics.limit()
	if l.slip == 0 || a.limited.Add(1)%l.slip != 0 {
		return nil
	}
	short, err := wire.QuestionOnly(reply)
	if err != nil {
		return nil
	}
	l.metrics.slipped()
	return short
}

// debit takes one reply from account a, whose key has tag, and returns
// its balance after: credited rate per second since its last debit, up to
// rate; never under floor.
func (l *Limiter) debit(a *account, tag uint64, rate, floor int64) int64 {
	now := l.now() & secondMask
	for {
		old := a.state.Load()
		balance := rate
		if old != 0 && old>>tagShift == tag {
			elapsed := int64((now - old>>balanceBits) & secondMask)
			balance = min(rate, int64(old&balanceMask)-balanceBias+elapsed*rate)
		}
		balance = max(balance-1, floor)
		next := tag<<tagShift | now<<balanceBits | uint64(balance+balanceBias)
		if a.state.CompareAndSwap(old, next) {
			return balance
		}
	}
}

// key hashes what identifies the account of reply to client: the
// client's prefix and the kind of reply, and for a non-error reply its
// question, name in lower case. The prefix is hashed with the Limiter's
// secret seed, so that nobody outside can aim at a slot; the question is
// folded in byte by byte (FNV-1a) and the sum mixed (murmur3's finalizer).
func (l *Limiter) key(client netip.Addr, reply []byte) (uint64, int) {
	bits := l.v6
	if client.Is4() {
		bits = l.v4
	}
	prefix, _ := client.Prefix(bits)
	a := prefix.Addr().As16()
	h := maphash.Bytes(l.seed, a[:])
	end, err := wire.QuestionsEnd(reply)
	if reply[3]&0xF != 0 || err != nil || reply[4] != 0 || reply[5] != 1 {
		return mix(h ^ kindError), kindError
	}
	for _, c := range reply[wire.HeaderLen:end] {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	return mix(h), kindResponse
}

// mix is murmur3's 64-bit finalizer: every bit of h moves every bit of
// the result, whose low bits index the table and high bits tag the slot.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}
