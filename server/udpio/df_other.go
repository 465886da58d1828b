//go:build !linux

package udpio

import "net"

// DontFragment is Linux only (df_linux.go); elsewhere the system's
// default stays.
func DontFragment(*net.UDPConn) {}
