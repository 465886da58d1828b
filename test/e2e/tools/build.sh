#!/usr/bin/env bash
# build.sh builds the control-plane binaries used by the hdns e2e harness
# (kube-apiserver, kube-controller-manager, etcd) from the Go module proxy.
#
# Contract:
#   - stdout carries exactly one line: the absolute path of the bin directory
#     holding the three binaries (export it as HDNS_E2E_BIN). Progress and
#     errors go to stderr.
#   - The binaries are cached in ${HDNS_E2E_CACHE:-$HOME/.cache/hdns-e2e}/<key>/bin,
#     where <key> is a sha256 over the tools modules (go.mod, go.sum, tools.go),
#     this script, `go version` and GOARCH. If that directory exists, nothing is
#     built.
#   - The build happens in a temporary directory that is renamed into place
#     only when complete, so an interrupted build never leaves a partial cache.
#   - Only Go (and coreutils) are required.
set -euo pipefail

# Keep stdout for the final path only.
exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${HDNS_E2E_CACHE:-${HOME:-/root}/.cache/hdns-e2e}

export GOWORK=off CGO_ENABLED=0
goarch=$(go env GOARCH)

key=$(
	cd "$here"
	for f in kube/go.mod kube/go.sum kube/tools.go etcd/go.mod etcd/go.sum etcd/tools.go build.sh; do
		if [[ -f $f ]]; then
			printf '== %s\n' "$f"
			cat "$f"
		fi
	done
	go version
	printf 'GOARCH=%s CGO_ENABLED=%s\n' "$goarch" "$CGO_ENABLED"
)
key=$(printf '%s' "$key" | sha256sum | cut -c1-16)
final=$cache_root/$key

if [[ -d $final/bin ]]; then
	echo "hdns-e2e: using cached binaries in $final/bin" >&2
	echo "$final/bin" >&3
	exit 0
fi

mkdir -p "$cache_root"
# Serialize concurrent builds of the same key (flock is in util-linux, which
# Debian always installs; without it concurrent builds just duplicate work).
if command -v flock >/dev/null; then
	exec 9>"$cache_root/.lock-$key"
	flock 9
	if [[ -d $final/bin ]]; then
		echo "hdns-e2e: binaries built concurrently in $final/bin" >&2
		echo "$final/bin" >&3
		exit 0
	fi
	# Holding the lock, any temp dir for this key is left over from a killed build.
	rm -rf "$cache_root/.tmp-$key-"*
fi
tmp=$(mktemp -d "$cache_root/.tmp-$key-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"

version=v1.37.2
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37 -X $pkg.gitTreeState=clean"
done

# One `go build` per binary: the linker peaks near 3 GB, so never link two at once.
build() { # build <module dir> <output name> <package> [ldflags]
	local dir=$1 out=$2 pkg=$3 flags=${4:-"-s -w"} start=$SECONDS
	echo "hdns-e2e: building $out ($pkg)" >&2
	(cd "$here/$dir" && go build -p 2 -trimpath -buildvcs=false -mod=readonly \
		-ldflags "$flags" -o "$tmp/bin/$out" "$pkg")
	echo "hdns-e2e: built $out in $((SECONDS - start))s" >&2
}

build etcd etcd go.etcd.io/etcd/server/v3
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"

# Publish atomically. If a concurrent build won the race, keep its result.
if ! mv -T "$tmp" "$final" 2>/dev/null; then
	[[ -d $final/bin ]] || { echo "hdns-e2e: cannot move $tmp to $final" >&2; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
echo "hdns-e2e: binaries ready in $final/bin" >&2
echo "$final/bin" >&3
