//go:build linux

package harness

import "syscall"

// sysProcAttr puts each child in its own process group (so it can be
// signalled as a group) and asks the kernel to kill it if the test binary
// dies without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
