#!/usr/bin/env bash
# Operator benchmark: 1,000 GateTokens at once (two signing threads, then one), then 10,000; time
# to all Ready, the operator's peak RSS, CPU cores used, signing time per token. Writes
# bench/operator/RESULTS.md. Not a test. Extra arguments go to the benchmark, e.g.
#   bench/operator/run.sh --scenario 500:0
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "== control-plane binaries" >&2
bash testenv/build-binaries.sh >/dev/null
echo "== building the operator (release) and the benchmark driver" >&2
cargo build --release --locked -p virt-gateway-operator --bin virt-gateway-operator
cargo build --locked -p virt-gateway-operator --example operator-bench
target/debug/examples/operator-bench \
    --operator target/release/virt-gateway-operator \
    --write bench/operator/RESULTS.md "$@"
