#!/usr/bin/env bash
# run.sh builds (or reuses) the control-plane binaries and runs the hdns e2e
# tests against them. Extra arguments are passed to `go test`, e.g.
#   test/e2e/run.sh -v -run ControlPlane
# It also builds (or reuses) CoreDNS with tools/build-coredns.sh for the
# scenarios that run hdns behind a real CoreDNS (HDNS_E2E_COREDNS).
# Environment: HDNS_E2E_CACHE (binary cache root, see tools/build.sh),
# HDNS_E2E_KEEP=1 (keep control-plane directories of passing tests).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HDNS_E2E_BIN=$("$root/test/e2e/tools/build.sh")
export HDNS_E2E_BIN
HDNS_E2E_COREDNS=$("$root/test/e2e/tools/build-coredns.sh")
export HDNS_E2E_COREDNS
cd "$root"
exec go test -tags e2e -count=1 -timeout 30m ./test/e2e/... "$@"
