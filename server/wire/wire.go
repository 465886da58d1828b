// Package wire holds what answering and forwarding share about packed DNS
// messages: the header layout, the size a reply may take on its
// transport, and cutting a packed reply down to that size.
//
// It owns no policy of its own and must not import zone, policy, or any
// other package of the server: both sides of the server import it.
package wire

import (
	"encoding/binary"
	"errors"
	"strings"

	"github.com/miekg/dns"
)

const (
	// HeaderLen is the length of a DNS message header.
	HeaderLen = 12
	// MaxUDPSize caps UDP replies whatever the client's EDNS buffer says,
	// to stay clear of IP fragmentation (DNS Flag Day 2020, RFC 9715). It
	// is also the buffer size hdns offers in its own OPT records.
	MaxUDPSize = 1232
	// minUDPSize is the reply size every UDP client accepts (RFC 1035).
	minUDPSize = 512
)

// Limit is the largest reply a client accepts: 65535 bytes over TCP; over
// UDP its EDNS buffer size when it sent an OPT record (hasOpt), at least
// 512 and at most MaxUDPSize, else 512.
func Limit(tcp, hasOpt bool, udpSize uint16) int {
	switch {
	case tcp:
		return dns.MaxMsgSize
	case hasOpt:
		return min(max(int(udpSize), minUDPSize), MaxUDPSize)
	}
	return minUDPSize
}

// Truncate cuts a packed reply to limit bytes in place. The additional
// section goes first, and dropping only it does not set TC (RFC 2181 9);
// if that is not enough, the answer keeps the records that fit, TC is set,
// and the authority goes too. A trailing OPT record is always kept.
//
// It cuts at record boundaries of the packed bytes: compression pointers
// only point backwards, so whatever stays remains valid.
func Truncate(out []byte, limit int) ([]byte, error) {
	counts := [4]int{} // question, answer, authority, additional
	for i := range counts {
		counts[i] = int(binary.BigEndian.Uint16(out[4+2*i:]))
	}
	off := HeaderLen
	var err error
	for range counts[0] {
		if off, err = skipName(out, off); err != nil {
			return nil, err
		}
		off += 4
	}
	// ends[i] is the offset after the i-th record of answer and authority.
	answerStart := off
	var ends []int
	for range counts[1] + counts[2] {
		if off, err = skipRR(out, off); err != nil {
			return nil, err
		}
		ends = append(ends, off)
	}
	opt, err := trailingOPT(out, off, counts[3])
	if err != nil {
		return nil, err
	}
	keepAN, keepNS, end := counts[1], counts[2], answerStart
	if len(ends) > 0 {
		end = ends[len(ends)-1]
	}
	tc := false
	if end+len(opt) > limit {
		tc, keepNS = true, 0
		keepAN = 0
		end = answerStart
		for i := 0; i < counts[1] && ends[i]+len(opt) <= limit; i++ {
			keepAN, end = i+1, ends[i]
		}
	}
	n := copy(out[end:], opt)
	out = out[:end+n]
	binary.BigEndian.PutUint16(out[6:], uint16(keepAN))
	binary.BigEndian.PutUint16(out[8:], uint16(keepNS))
	binary.BigEndian.PutUint16(out[10:], uint16(min(1, len(opt))))
	if tc {
		out[2] |= 0x02
	}
	return out, nil
}

// QuestionsEnd returns the offset after the question section of the
// packed message out.
func QuestionsEnd(out []byte) (int, error) {
	if len(out) < HeaderLen {
		return 0, errShortReply
	}
	off := HeaderLen
	var err error
	for range int(binary.BigEndian.Uint16(out[4:])) {
		if off, err = skipName(out, off); err != nil {
			return 0, err
		}
		if off += 4; off > len(out) {
			return 0, errShortReply
		}
	}
	return off, nil
}

// QuestionOnly cuts a packed reply in place to its header and questions,
// with no records and TC set: the smallest reply that sends a client to
// TCP, never longer than the query it answers.
func QuestionOnly(out []byte) ([]byte, error) {
	end, err := QuestionsEnd(out)
	if err != nil {
		return nil, err
	}
	out = out[:end]
	out[2] |= 0x02
	clear(out[6:HeaderLen])
	return out, nil
}

// trailingOPT returns the last of the n additional records starting at
// off when it is an OPT record, else nil.
func trailingOPT(out []byte, off, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	last := off
	var err error
	for range n {
		last = off
		if off, err = skipRR(out, off); err != nil {
			return nil, err
		}
	}
	if binary.BigEndian.Uint16(out[last+1:]) == dns.TypeOPT && out[last] == 0 {
		return out[last:off], nil
	}
	return nil, nil
}

var errShortReply = errors.New("wire: packed reply ends inside a record")

func skipName(b []byte, off int) (int, error) {
	for {
		if off >= len(b) {
			return 0, errShortReply
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			return off + 2, nil
		default:
			off += 1 + l
		}
	}
}

func skipRR(b []byte, off int) (int, error) {
	off, err := skipName(b, off)
	if err != nil || off+10 > len(b) {
		return 0, errShortReply
	}
	off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
	if off > len(b) {
		return 0, errShortReply
	}
	return off, nil
}

// Lower returns the name s in lower case, without allocating when it
// already is.
func Lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
