package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Version: "v0.1.1-0.20261207010000-abcdef012345+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abcdef0123456789"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name                    string
		bi                      *debug.BuildInfo
		linkVersion, linkCommit string
		want                    Info
	}{
		{
			name: "what go build stamps",
			bi:   stamped,
			want: Info{Version: "v0.1.1-0.20261207010000-abcdef012345+dirty", Commit: "abcdef0123456789-dirty", GoVersion: "go1.26.8"},
		},
		{
			name:        "the linker's values win",
			bi:          stamped,
			linkVersion: "v0.1.0", linkCommit: "0123",
			want: Info{Version: "v0.1.0", Commit: "0123", GoVersion: "go1.26.8"},
		},
		{
			name: "nothing recorded",
			bi:   &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: Info{Version: "devel", Commit: "unknown", GoVersion: "unknown"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuildInfo(tc.bi, tc.linkVersion, tc.linkCommit); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadNamesTheToolchain(t *testing.T) {
	if got := Read(); got.GoVersion == "unknown" || got.Version == "" || got.Commit == "" {
		t.Errorf("Read() = %+v: a test binary records its Go version", got)
	}
}
