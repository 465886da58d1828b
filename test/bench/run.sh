#!/usr/bin/env bash
# run.sh runs hdns's benchmark suite: throughput and latency
# under dnsperf against hdns, CoreDNS and Knot DNS; memory per endpoint;
# propagation of a pod status change to the answer, and of endpoint changes
# at 10-500 per second among 10k-200k endpoints, and of a one-file edit in a
# 2,000-file manifests directory (./test/bench); and the
# balance-quality benchmark (./test/bench/balance), one package after the
# other so that no two measurements share the CPUs. It builds (or reuses)
# the control plane and CoreDNS like test/e2e/run.sh, rebuilds hdns from
# the work tree, and prints the results as markdown on stdout (progress and
# the go test log go to stderr). Figures are never pass or fail; a broken
# suite is.
#
#   test/bench/run.sh                       # the full suite
#   HDNS_BENCH_SMOKE=1 test/bench/run.sh    # seconds per mix: what CI runs
#   test/bench/run.sh -run Throughput       # extra arguments go to go test
#   HDNS_BENCH_PKGS=./test/bench test/bench/run.sh   # without balance
#
# Environment: HDNS_BENCH_SMOKE, HDNS_BENCH_RUNS (3), HDNS_BENCH_DURATION
# (10s per dnsperf run), HDNS_BENCH_SCALES (1000,10000,50000),
# HDNS_BENCH_CHANGES (50), HDNS_BENCH_SIZES (balance: 3,10,50),
# HDNS_BENCH_CHURN_SCALES (10000,100000,200000), HDNS_BENCH_CHURN_RATES
# (10,100,500 changes/s), HDNS_BENCH_CHURN_DURATION (60s per rate),
# HDNS_BENCH_CHURN_PROBES (10 timed changes/s), HDNS_BENCH_MANIFEST_ENDPOINTS
# (200000, 100 per file), HDNS_BENCH_MANIFEST_EDITS (20),
# HDNS_BENCH_ONLY (balance: policy keys, e.g. ll1,k8s), HDNS_BENCH_STEADY
# (balance: the measured window, 20s), HDNS_BENCH_REPLICAS
# (balance: hdns replica counts, 1,2,3), HDNS_BENCH_FORWARD (balance: random
# or pinned, how caches reach the replicas), HDNS_BENCH_LIVE, HDNS_BENCH_LIVE_KIND, HDNS_BENCH_LIVE_POLL,
# HDNS_BENCH_LIVE_SCRAPE and HDNS_BENCH_PREFETCH (balance variants: live load
# from a real Prometheus, prefetching caches; see variants_test.go), HDNS_BENCH_PROFILE (directory: perf record of
# hdns during the first 3-record run), HDNS_BENCH_OUT (directory for
# report.md, balance.md and go-test.log; default a new /tmp/hdns-bench-*
# directory), HDNS_BENCH_PKGS (packages, default ./test/bench/...).
# Needs dnsperf and knot (Debian; scripts/setup installs them), taskset,
# and two CPUs: the server is pinned to CPU 0 and dnsperf to CPU 1.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

for tool in dnsperf:dnsperf knotd:knot taskset:util-linux; do
	if ! command -v "${tool%%:*}" >/dev/null; then
		echo "bench: ${tool%%:*} is missing (Debian package ${tool#*:}; run scripts/setup)" >&2
		exit 1
	fi
done
if (($(nproc) < 2)); then
	echo "bench: needs 2 CPUs (server and dnsperf pinned apart), have $(nproc)" >&2
	exit 1
fi

HDNS_E2E_BIN=$("$root/test/e2e/tools/build.sh")
HDNS_E2E_COREDNS=$("$root/test/e2e/tools/build-coredns.sh")
export HDNS_E2E_BIN HDNS_E2E_COREDNS

out=${HDNS_BENCH_OUT:-$(mktemp -d /tmp/hdns-bench-XXXXXX)}
mkdir -p "$out"
HDNS_BENCH_OUT=$out
HDNS_BENCH_REPORT=$out/report.md
export HDNS_BENCH_OUT HDNS_BENCH_REPORT
: >"$HDNS_BENCH_REPORT"
rm -f "$out/balance.md"

# The command as run, with the variables that shaped it.
command="test/bench/run.sh"
for v in HDNS_BENCH_SMOKE HDNS_BENCH_RUNS HDNS_BENCH_DURATION HDNS_BENCH_SCALES HDNS_BENCH_CHANGES HDNS_BENCH_PROFILE HDNS_BENCH_TTL HDNS_BENCH_SIZES HDNS_BENCH_ONLY HDNS_BENCH_STEADY HDNS_BENCH_ZONE_NODES HDNS_BENCH_REPLICAS HDNS_BENCH_FORWARD HDNS_BENCH_LIVE HDNS_BENCH_LIVE_KIND HDNS_BENCH_LIVE_POLL HDNS_BENCH_LIVE_SCRAPE HDNS_BENCH_PREFETCH HDNS_BENCH_PKGS \
	HDNS_BENCH_CHURN_SCALES HDNS_BENCH_CHURN_RATES HDNS_BENCH_CHURN_DURATION HDNS_BENCH_CHURN_PROBES \
	HDNS_BENCH_MANIFEST_ENDPOINTS HDNS_BENCH_MANIFEST_EDITS; do
	if [[ -n ${!v:-} ]]; then
		command="$v=${!v} $command"
	fi
done
if (($#)); then
	command+=" $*"
fi

timeout=120m
if [[ -n ${HDNS_BENCH_SMOKE:-} ]]; then
	timeout=10m
fi
start=$SECONDS
set +e
read -r -a pkgs <<<"${HDNS_BENCH_PKGS:-./test/bench/...}"
go test -tags bench -count=1 -p 1 -timeout "$timeout" -v "${pkgs[@]}" "$@" 2>&1 | tee "$out/go-test.log" >&2
status=${PIPESTATUS[0]}
set -e

echo "## Results of \`$command\`"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - start)) s, hdns $(git describe --always --dirty 2>/dev/null || echo unknown). Log: $out/go-test.log"
echo
cat "$HDNS_BENCH_REPORT"
if [[ -s $out/balance.md ]]; then
	echo
	cat "$out/balance.md"
fi
if ((status != 0)); then
	echo "bench: go test failed (status $status); see $out/go-test.log" >&2
fi
exit "$status"
