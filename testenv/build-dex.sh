#!/usr/bin/env bash
# Builds the Dex OpenID Connect provider the tests and the demo sign in with, from the Go module
# proxy (pinned in testenv/dex/go.mod), and caches it by version like the control plane.
#
#   testenv/build-dex.sh          build it if missing, print the cache directory last
#   testenv/build-dex.sh --print  only print the cache directory
#
# The cache directory is $VIRT_GATEWAY_TESTENV_DEX_DIR, or
# ${XDG_CACHE_HOME:-~/.cache}/virt-gateway/testenv/dex-<pseudo-version>. A second run reuses it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dex_version=$(awk '$1 == "require" && $2 == "github.com/dexidp/dex" {print $3}' "$here/dex/go.mod")
: "${dex_version:?cannot read the github.com/dexidp/dex version from testenv/dex/go.mod}"

bin_dir=${VIRT_GATEWAY_TESTENV_DEX_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/virt-gateway/testenv/dex-${dex_version}}
if [ "${1:-}" = "--print" ]; then
  echo "$bin_dir"
  exit 0
fi

say() { printf '[testenv] %s\n' "$*" >&2; }
die() { printf '[testenv] error: %s\n' "$*" >&2; exit 1; }

if [ -x "$bin_dir/dex" ]; then
  say "Dex cached in $bin_dir ($dex_version)"
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || die "the Go toolchain is required to build Dex (go not found on PATH)"
mkdir -p "$bin_dir"
say "building Dex $dex_version into $bin_dir (first run only; about two minutes on 2 cores)"
start=$(date +%s)

say "downloading Go modules for Dex"
if ! out=$(cd "$here/dex" && go mod download 2>&1); then
  printf '%s\n' "$out" >&2
  die "cannot fetch Dex's Go modules from the module proxy (output above)"
fi

pkg=github.com/dexidp/dex/cmd/dex
total=$(cd "$here/dex" && go list -deps "$pkg" | wc -l)
tmp="$bin_dir/.dex.tmp"
say "building dex from $pkg ($total packages)"
# go build -v prints each package it compiles; turn that into a progress line every 100.
if ! (cd "$here/dex" && go build -v -trimpath \
  -ldflags="-s -w -X github.com/dexidp/dex/version.Version=$dex_version" -o "$tmp" "$pkg") 2>&1 |
  awk -v total="$total" '
    /^#/ || /\.go:[0-9]+:/ || /^go: / { print; fflush(); next }
    { n++; if (n % 100 == 0) { printf "[testenv]   dex: compiled %d of up to %d packages\n", n, total; fflush() } }'; then
  rm -f "$tmp"
  die "go build of $pkg failed (output above)"
fi
[ -x "$tmp" ] || die "go build of $pkg produced no binary"
mv "$tmp" "$bin_dir/dex"
say "built Dex in $(( $(date +%s) - start ))s; disk used: $(du -sh "$bin_dir" | cut -f1)"
echo "$bin_dir"
