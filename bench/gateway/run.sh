#!/usr/bin/env bash
# Gateway benchmarks (issues 8, 15): builds the release gateway, the harness and the upstream Go
# gateway (bench/gateway/build-go-peer.sh, run beside ours), then runs
# `gateway-bench run` (HTTP overhead against a minimal upstream and the real kube-apiserver, CPU per
# request, latency at a fixed rate, WebSocket throughput and memory per idle session, the token
# cache, the gateway's memory with 10,000 watched GateTokens, revocation at scale, a shared console: 1 controller
# + 10 observers vs one direct viewer). Loopback only; every loop is bounded. Writes bench/RESULTS.md and bench/results/full/
# (with --quick: bench/results/quick/, a smoke run of a few minutes). Not a test.
#   bench/gateway/run.sh [--quick] [--skip-apiserver] [--no-profile] [--only http,fixed,ws,token,idle,console,apiserver,watched,revocation,profile]
#   [--revocation-sessions N]   (revocation at scale with N sessions instead of 5,000; a fifth revoked)
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '[bench] %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if [[ " $* " != *" --no-profile "* ]]; then
  # perf: profiles at c=16; valgrind: callgrind's instruction counts; strace: system call counts.
  missing=()
  command -v perf >/dev/null || missing+=(linux-perf)
  command -v valgrind >/dev/null || missing+=(valgrind)
  command -v strace >/dev/null || missing+=(strace)
  if ((${#missing[@]})); then
    say "installing ${missing[*]} (Debian)"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
if [[ " $* " != *" --skip-apiserver "* ]]; then
  say "control-plane binaries (built once, cached)"
  bash testenv/build-binaries.sh >/dev/null
fi
say "the upstream Go gateway (built once from its source, cached by the source's hash)"
go_args=()
if go_bin=$(bash bench/gateway/build-go-peer.sh); then
  go_args=(--go-peer "$go_bin")
else
  go_args=(--go-peer-note "bench/gateway/build-go-peer.sh failed (exit $?; its output is above)")
fi
say "building kube-gateway and gateway-bench (release)"
cargo build --release --locked -p kube-gateway -p virt-gateway-bench
# 5,000 idle WebSockets need ~10,000 descriptors in the gateway; the harness raises the soft limit
# to the hard one as well.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec target/release/gateway-bench run "${go_args[@]}" "$@"
