//go:build !linux

package harness

import "syscall"

// sysProcAttr puts each child in its own process group so it can be
// signalled as a group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
