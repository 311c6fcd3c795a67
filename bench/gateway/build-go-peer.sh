#!/usr/bin/env bash
# Builds the upstream Go gateway (Gen B, the peer the benchmarks run beside ours) from its source
# with the source's own build.sh, and caches the binary by the hash of that source. Its code is
# never copied into this repository: it is built from a scratch copy in a temporary directory (the
# build resolves modules through the Go module proxy, which may rewrite go.sum, so the shared
# source is never written to).
#   bench/gateway/build-go-peer.sh            build if missing; print the binary's path last
#   VIRT_GATEWAY_GO_PEER_SRC=DIR ...           the source (default: the first
#                                             <ancestor>/shared/peers/kube-gateway-gen-b above here)
# Exit status 3 when there is no source or no Go toolchain (the bench reports the peer as absent).
set -euo pipefail
say() { printf '[go-peer] %s\n' "$*" >&2; }

src=${VIRT_GATEWAY_GO_PEER_SRC:-}
if [[ -z "$src" ]]; then
  d=$(cd "$(dirname "$0")" && pwd)
  while [[ "$d" != / ]]; do
    if [[ -f "$d/shared/peers/kube-gateway-gen-b/build.sh" ]]; then
      src="$d/shared/peers/kube-gateway-gen-b"
      break
    fi
    d=$(dirname "$d")
  done
fi
if [[ -z "$src" || ! -f "$src/build.sh" ]]; then
  say "no source of the Go peer found (set VIRT_GATEWAY_GO_PEER_SRC)"
  exit 3
fi
if ! command -v go >/dev/null; then
  say "no Go toolchain (go) on PATH"
  exit 3
fi
src=$(cd "$src" && pwd)
# The cache key: every file of the source (path and content) and the Go version.
hash=$( (cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; go version) \
  | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/virt-gateway/go-peer/$hash
bin=$cache/kube-gateway
if [[ -x "$bin" ]]; then
  say "cached: $bin (source $src, hash $hash)"
else
  say "building $src (hash $hash) with its build.sh; modules from the Go module proxy, ~1 min cold"
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  cp -R "$src/." "$scratch/"
  chmod -R u+w "$scratch"
  mkdir -p "$cache"
  start=$SECONDS
  bash "$scratch/build.sh" "$cache/kube-gateway.partial" >&2
  mv "$cache/kube-gateway.partial" "$bin"
  printf '%s\n' "$src" >"$cache/SOURCE"
  say "built in $((SECONDS - start)) s: $bin"
fi
printf '%s\n' "$bin"
