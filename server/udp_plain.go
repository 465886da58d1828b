//go:build !(linux && (amd64 || arm64))

package server

// serveUDP answers UDP queries one datagram at a time where batched
// system calls are not implemented.
func (s *Server) serveUDP() { s.serveUDPPlain() }
