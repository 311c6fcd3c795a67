#!/usr/bin/env bash
# Builds the command-line tools the deploy tests run, from the Go module proxy, and caches them:
#   helm          helm.sh/helm/v4 (the chart's lint, template, install, upgrade, uninstall tests)
#   olm-validate  tools/olm-validate: the Operator Framework's bundle validation
#                 (github.com/operator-framework/api), as `operator-sdk bundle validate` runs it
# and copies the OLM CRDs that module ships (the ClusterServiceVersion's schema) next to them.
#
#   tools/build.sh          build what is missing, print the cache directory last
#   tools/build.sh --print  only print the cache directory
#
# Versions are pinned in tools/go.mod (and go.sum). The cache directory is
# $VIRT_GATEWAY_TOOLS_DIR, or ${XDG_CACHE_HOME:-~/.cache}/virt-gateway/tools/<versions>-<hash of
# the module and olm-validate's source>, so a change to either builds afresh; a second run reuses it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version_of() { awk -v m="$1" '$1 == m {print $2; exit}' "$here/go.mod"; }
helm_version=$(version_of helm.sh/helm/v4)
olm_api_version=$(version_of github.com/operator-framework/api)
: "${helm_version:?cannot read the helm.sh/helm/v4 version from tools/go.mod}"
: "${olm_api_version:?cannot read the github.com/operator-framework/api version from tools/go.mod}"
source_hash=$(cat "$here/go.mod" "$here/go.sum" "$here/olm-validate/main.go" "$here/build.sh" | sha256sum | cut -c1-12)

bin_dir=${VIRT_GATEWAY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/virt-gateway/tools/helm-${helm_version}_olm-api-${olm_api_version}_${source_hash}}
if [ "${1:-}" = "--print" ]; then
  echo "$bin_dir"
  exit 0
fi

say() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

outputs=(helm olm-validate olm-crds/operators.coreos.com_clusterserviceversions.yaml)
complete=true
for o in "${outputs[@]}"; do
  [ -s "$bin_dir/$o" ] || complete=false
done
if $complete; then
  say "helm $helm_version and olm-validate (operator-framework/api $olm_api_version) cached in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || die "the Go toolchain is required to build helm and olm-validate (go not found on PATH)"
need_go=$(awk '$1 == "go" {print $2}' "$here/go.mod")
go_version=$(go env GOVERSION)
if [ "$(printf '%s\n%s\n' "go$need_go" "$go_version" | sort -V | head -n1)" != "go$need_go" ]; then
  die "tools/go.mod needs Go $need_go or newer; this machine has $go_version"
fi

mkdir -p "$bin_dir"
start_all=$(date +%s)
say "building helm $helm_version and olm-validate (operator-framework/api $olm_api_version) into $bin_dir (first run only; a few minutes on 2 cores)"

say "downloading Go modules (tools/go.mod)"
if ! out=$(cd "$here" && go mod download 2>&1); then
  printf '%s\n' "$out" >&2
  mods=$(printf '%s\n' "$out" | grep -oE '[a-z0-9.-]+\.[a-z]+/[^ @:]+@v[^ :]+' | sort -u | tr '\n' ' ')
  die "cannot fetch Go modules from the module proxy: ${mods:-see the go output above}"
fi

# One `go build` for both commands: they share most of their packages (k8s.io/*), compiled once.
# go build -v prints each package it compiles (a bare import path); turn those into progress lines
# and pass everything else (compiler errors have spaces) through.
pkgs=(helm.sh/helm/v4/cmd/helm ./olm-validate)
total=$(cd "$here" && go list -deps "${pkgs[@]}" | sort -u | wc -l)
tmp="$bin_dir/.build"
rm -rf "$tmp"
mkdir -p "$tmp"
say "compiling helm and olm-validate (up to $total packages)"
if ! (cd "$here" && go build -v -trimpath -buildvcs=false \
  -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" \
  -o "$tmp/" "${pkgs[@]}") 2>&1 |
  awk -v total="$total" '
    /^#/ || / / { print; fflush(); next }
    { n++; if (n % 150 == 0) { printf "[tools]   compiled %d of up to %d packages\n", n, total; fflush() } }' >&2; then
  rm -rf "$tmp"
  die "go build of helm / olm-validate failed (output above)"
fi
for b in helm olm-validate; do
  [ -x "$tmp/$b" ] || die "go build produced no $b"
done

# The OLM CRDs as operator-framework/api ships them: the tests dry-run the bundle's
# ClusterServiceVersion against the real schema on the test API server.
api_dir=$(cd "$here" && go list -m -f '{{.Dir}}' github.com/operator-framework/api)
mkdir -p "$tmp/olm-crds"
cp "$api_dir/crds/operators.coreos.com_clusterserviceversions.yaml" "$tmp/olm-crds/"
chmod u+w "$tmp/olm-crds/"*

rm -rf "$bin_dir/olm-crds"
mv "$tmp/olm-crds" "$bin_dir/olm-crds"
mv "$tmp/helm" "$bin_dir/helm"
mv "$tmp/olm-validate" "$bin_dir/olm-validate"
rmdir "$tmp"
"$bin_dir/helm" version --short >&2 || die "the built helm does not run"
say "tools ready in $(( $(date +%s) - start_all ))s; disk used: $(du -sh "$bin_dir" | cut -f1)"
echo "$bin_dir"
