#!/usr/bin/env bash
# build-coredns.sh builds CoreDNS (pinned in coredns/go.mod) from the Go module
# proxy for the hdns e2e tests that run hdns behind a real CoreDNS.
#
# Contract (same as build.sh, separate cache so that neither invalidates the
# other):
#   - stdout carries exactly one line: the absolute path of the coredns binary
#     (export it as HDNS_E2E_COREDNS). Progress and errors go to stderr.
#   - The binary is cached in ${HDNS_E2E_CACHE:-$HOME/.cache/hdns-e2e}/coredns-<key>/bin,
#     where <key> is a sha256 over coredns/go.mod, coredns/go.sum, this script,
#     `go version` and GOARCH. If that directory exists, nothing is built.
#   - The build happens in a temporary directory renamed into place only when
#     complete.
set -euo pipefail
exec 3>&1 1>&2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${HDNS_E2E_CACHE:-${HOME:-/root}/.cache/hdns-e2e}

export GOWORK=off CGO_ENABLED=0
goarch=$(go env GOARCH)

key=$(
	cd "$here"
	for f in coredns/go.mod coredns/go.sum build-coredns.sh; do
		printf '== %s\n' "$f"
		cat "$f"
	done
	go version
	printf 'GOARCH=%s CGO_ENABLED=%s\n' "$goarch" "$CGO_ENABLED"
)
key=coredns-$(printf '%s' "$key" | sha256sum | cut -c1-16)
final=$cache_root/$key

if [[ -x $final/bin/coredns ]]; then
	echo "hdns-e2e: using cached coredns in $final/bin" >&2
	echo "$final/bin/coredns" >&3
	exit 0
fi

mkdir -p "$cache_root"
if command -v flock >/dev/null; then
	exec 9>"$cache_root/.lock-$key"
	flock 9
	if [[ -x $final/bin/coredns ]]; then
		echo "$final/bin/coredns" >&3
		exit 0
	fi
	rm -rf "$cache_root/.tmp-$key-"*
fi
tmp=$(mktemp -d "$cache_root/.tmp-$key-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/bin"

start=$SECONDS
echo "hdns-e2e: building coredns" >&2
(cd "$here/coredns" && go build -p 2 -trimpath -buildvcs=false -mod=readonly \
	-ldflags "-s -w" -o "$tmp/bin/coredns" github.com/coredns/coredns)
echo "hdns-e2e: built coredns in $((SECONDS - start))s" >&2

if ! mv -T "$tmp" "$final" 2>/dev/null; then
	[[ -x $final/bin/coredns ]] || { echo "hdns-e2e: cannot move $tmp to $final" >&2; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
echo "hdns-e2e: coredns ready in $final/bin" >&2
echo "$final/bin/coredns" >&3
