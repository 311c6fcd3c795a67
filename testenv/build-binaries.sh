#!/usr/bin/env bash
# Builds the control-plane binaries the tests and the demo run (etcd, kube-apiserver,
# kube-controller-manager, kubectl) from the Go module proxy, and caches them by version.
#
#   testenv/build-binaries.sh          build what is missing, print the cache directory last
#   testenv/build-binaries.sh --print  only print the cache directory
#
# The cache directory is $VIRT_GATEWAY_TESTENV_BIN_DIR, or
# ${XDG_CACHE_HOME:-~/.cache}/virt-gateway/testenv/<versions>. A second run reuses it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/k8s/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/etcd/go.mod")
: "${k8s_version:?cannot read the k8s.io/kubernetes version from testenv/k8s/go.mod}"
: "${etcd_version:?cannot read the etcd version from testenv/etcd/go.mod}"

bin_dir=${VIRT_GATEWAY_TESTENV_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/virt-gateway/testenv/k8s-${k8s_version}_etcd-${etcd_version}}
if [ "${1:-}" = "--print" ]; then
  echo "$bin_dir"
  exit 0
fi

say() { printf '[testenv] %s\n' "$*" >&2; }
die() { printf '[testenv] error: %s\n' "$*" >&2; exit 1; }

binaries=(etcd kube-apiserver kube-controller-manager kubectl)
missing=()
for b in "${binaries[@]}"; do
  [ -x "$bin_dir/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
  say "control-plane binaries cached in $bin_dir (Kubernetes $k8s_version, etcd $etcd_version)"
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || die "the Go toolchain is required to build the control plane (go not found on PATH)"
go_version=$(go env GOVERSION)
need_go=$(awk '$1 == "go" {print $2}' "$here/k8s/go.mod")
if [ "$(printf '%s\n%s\n' "go$need_go" "$go_version" | sort -V | head -n1)" != "go$need_go" ]; then
  die "Kubernetes $k8s_version needs Go $need_go or newer; this machine has $go_version"
fi

mkdir -p "$bin_dir"
say "building ${missing[*]} into $bin_dir (first run only; takes several minutes on 2 cores)"
start_all=$(date +%s)

# Fetch every module first, so that a module the registry cannot serve is named clearly.
fetch() {
  local dir=$1 out
  say "downloading Go modules for $(basename "$dir") (Kubernetes $k8s_version / etcd $etcd_version)"
  if ! out=$(cd "$dir" && go mod download 2>&1); then
    printf '%s\n' "$out" >&2
    local mods
    mods=$(printf '%s\n' "$out" | grep -oE '[a-z0-9.-]+\.[a-z]+/[^ @:]+@v[^ :]+' | sort -u | tr '\n' ' ')
    die "cannot fetch Go modules from the module proxy: ${mods:-see the go output above}"
  fi
}

# go build -v prints each package it compiles; turn that into a "[n/total]" progress line.
build() {
  local dir=$1 pkg=$2 out=$3 ldflags=$4 total tmp
  total=$(cd "$dir" && go list -deps "$pkg" | wc -l)
  tmp="$bin_dir/.$(basename "$out").tmp"
  local start
  start=$(date +%s)
  say "building $(basename "$out") from $pkg ($total packages)"
  if ! (cd "$dir" && go build -v -trimpath -ldflags="$ldflags" -o "$tmp" "$pkg") 2>&1 |
    awk -v total="$total" -v name="$(basename "$out")" '
      /^#/ || /error|cannot|undefined/ { print; fflush(); next }
      { n++; if (n % 150 == 0) { printf "[testenv]   %s: compiled %d of up to %d packages\n", name, n, total; fflush() } }'; then
    rm -f "$tmp"
    die "go build of $pkg failed (output above)"
  fi
  [ -x "$tmp" ] || die "go build of $pkg produced no binary"
  mv "$tmp" "$out"
  say "built $(basename "$out") in $(( $(date +%s) - start ))s"
}

fetch "$here/etcd"
fetch "$here/k8s"

minor=${k8s_version#v1.}
minor=${minor%%.*}
k8s_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
for b in "${missing[@]}"; do
  case $b in
    etcd) build "$here/etcd" . "$bin_dir/etcd" "-s -w" ;;
    *) build "$here/k8s" "k8s.io/kubernetes/cmd/$b" "$bin_dir/$b" "$k8s_ldflags" ;;
  esac
done

say "control-plane binaries ready in $(( $(date +%s) - start_all ))s; disk used: $(du -sh "$bin_dir" | cut -f1)"
echo "$bin_dir"
