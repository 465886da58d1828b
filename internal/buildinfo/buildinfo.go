// Package buildinfo says which hdns this is: its version, the commit it was
// built from and the Go that built it. It owns nothing else and imports only
// the standard library, so that every package may use it.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version and commit are set at link time by release builds:
//
//	go build -ldflags "-X github.com/hdns-dev/hdns/internal/buildinfo.version=v0.1.0 -X github.com/hdns-dev/hdns/internal/buildinfo.commit=<sha>"
//
// Left empty, they come from what the Go toolchain stamps into the binary.
var version, commit string

// Info identifies a build.
type Info struct {
	// Version is the release ("v0.1.0"), else the module version Go
	// derived from version control, else "devel".
	Version string
	// Commit is the VCS revision, with "-dirty" when the tree had
	// uncommitted changes; "unknown" when the build did not record it.
	Commit string
	// GoVersion is the toolchain that built the binary ("go1.26.8").
	GoVersion string
}

// Read returns this binary's Info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{}
	}
	return fromBuildInfo(bi, version, commit)
}

// fromBuildInfo combines what the linker set (linkVersion, linkCommit)
// with what Go recorded; the linker's values win.
func fromBuildInfo(bi *debug.BuildInfo, linkVersion, linkCommit string) Info {
	info := Info{Version: linkVersion, Commit: linkCommit, GoVersion: bi.GoVersion}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" || info.Version == "(devel)" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		var rev string
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		info.Commit = "unknown"
		if rev != "" {
			info.Commit = rev
			if dirty && !strings.HasSuffix(rev, "-dirty") {
				info.Commit += "-dirty"
			}
		}
	}
	if info.GoVersion == "" {
		info.GoVersion = "unknown"
	}
	return info
}

// String is the one line `hdns --version` prints.
func (i Info) String() string {
	return "hdns " + i.Version + " (commit " + i.Commit + ", " + i.GoVersion + ")"
}
