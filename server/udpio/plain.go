//go:build !(linux && (amd64 || arm64))

package udpio

// Serve reads and answers datagrams until the socket is closed, one at a
// time: batched system calls are implemented for Linux on amd64 and arm64
// only.
func (c *Conn) Serve(answer Answer) { c.ServeOneByOne(answer) }
