#!/usr/bin/env bash
# build.sh builds the helm command pinned in go.mod (helm.sh/helm/v4) from
# the Go module proxy, for the tests that lint and render charts/hdns.
#
# Contract (as test/e2e/tools/build.sh):
#   - stdout carries exactly one line: the absolute path of the helm binary.
#     Progress and errors go to stderr.
#   - The binary is cached in ${HDNS_TOOLS_CACHE:-$HOME/.cache/hdns-tools}/helm-<key>/bin,
#     where <key> is a sha256 over go.mod, go.sum, this script, `go version`
#     and GOARCH. If that directory exists, nothing is built: one build per
#     pinned version (a few minutes on 2 cores), then a lookup.
#   - The build happens in a temporary directory renamed into place only when
#     complete, so an interrupted build never leaves a partial cache.
#   - Only Go (and coreutils) are required.
set -euo pipefail
exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${HDNS_TOOLS_CACHE:-${HOME:-/root}/.cache/hdns-tools}

export GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=readonly
goarch=$(go env GOARCH)
version=$(cd "$here" && go list -m -f '{{.Version}}' helm.sh/helm/v4)

key=$(
	cd "$here"
	for f in go.mod go.sum build.sh; do
		printf '== %s\n' "$f"
		cat "$f"
	done
	go version
	printf 'GOARCH=%s CGO_ENABLED=%s\n' "$goarch" "$CGO_ENABLED"
)
key=helm-$version-$(printf '%s' "$key" | sha256sum | cut -c1-16)
final=$cache_root/$key

if [[ -x $final/bin/helm ]]; then
	echo "$final/bin/helm" >&3
	exit 0
fi

mkdir -p "$cache_root"
# Serialize concurrent builds of the same key (flock is in util-linux).
if command -v flock >/dev/null; then
	exec 9>"$cache_root/.lock-$key"
	flock 9
	if [[ -x $final/bin/helm ]]; then
		echo "$final/bin/helm" >&3
		exit 0
	fi
	rm -rf "$cache_root/.tmp-$key-"*
fi
tmp=$(mktemp -d "$cache_root/.tmp-$key-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"

start=$SECONDS
echo "hdns-tools: building helm $version" >&2
# The version ldflags are helm's own Makefile's, so that `helm version`
# names the pinned release rather than its bare major.minor.
(cd "$here" && go build -p 2 -trimpath -buildvcs=false \
	-ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
	-o "$tmp/bin/helm" helm.sh/helm/v4/cmd/helm)
echo "hdns-tools: built helm $version in $((SECONDS - start))s" >&2

if ! mv -T "$tmp" "$final" 2>/dev/null; then
	[[ -x $final/bin/helm ]] || { echo "hdns-tools: cannot move $tmp to $final" >&2; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
echo "$final/bin/helm" >&3
