//go:build bench

// Command udpfloor is the throughput benchmark's I/O floor: it serves UDP
// through hdns's own loop (server/udpio, with the same socket options and
// workers) and answers every query with one fixed reply under the query's
// ID. Given the bytes hdns sends for a question, what hdns costs above it
// on that question is its answer path, and CoreDNS's CPU per query over
// udpfloor's bounds the ratio any work on that path can reach.
package main

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"

	"github.com/hdns-dev/hdns/server/udpio"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5300", "UDP host:port")
	replyHex := flag.String("reply", "", "the reply, in hex; its first two bytes are replaced by each query's ID")
	flag.Parse()
	reply, err := hex.DecodeString(*replyHex)
	if err != nil || len(reply) < 12 {
		fmt.Fprintf(os.Stderr, "udpfloor: --reply must be a DNS message in hex: %v\n", err)
		os.Exit(2)
	}
	addr, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "udpfloor: %v\n", err)
		os.Exit(2)
	}
	c, err := net.ListenUDP("udp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "udpfloor: %v\n", err)
		os.Exit(1)
	}
	udpio.DontFragment(c)
	conn := &udpio.Conn{UDP: c}
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) { // as hdns's default UDPWorkers
		out := bytes.Clone(reply) // each worker writes its own ID into it
		wg.Go(func() {
			conn.Serve(func(pkt []byte, _ netip.AddrPort, _ []byte) []byte {
				if len(pkt) < 12 || pkt[2]&0x80 != 0 {
					return nil
				}
				out[0], out[1] = pkt[0], pkt[1]
				return out
			})
		})
	}
	wg.Wait()
}
