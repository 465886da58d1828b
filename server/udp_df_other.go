//go:build !linux

package server

import "net"

// setDontFragment is Linux only (udp_df_linux.go); elsewhere the system's
// default stays.
func setDontFragment(*net.UDPConn) {}
