#!/usr/bin/env bash
# `make images`: builds the three virt-gateway container images without a Docker engine and checks
# them. Output: OCI archives in target/images/ (push them with
# `skopeo copy oci-archive:target/images/X.oci.tar docker://REGISTRY/NAME:TAG`).
#
#   1. Debian packages it needs (buildah, busybox-static, jq, binutils, ca-certificates), if missing.
#   2. The web app (npm ci if needed; WEB_DIST=target/images/web/public npm run build).
#   3. Static release binaries of kube-gateway and virt-gateway-operator (glibc, +crt-static), in
#      target/images/cargo.
#   4. Each image: images/rootfs.sh lays out its root filesystem, buildah runs
#      images/<image>.Dockerfile on it (--build-arg ARTIFACTS=prebuilt, FROM scratch, chroot
#      isolation, vfs storage under target/images/storage, fixed timestamp), twice: the two
#      image ids must be equal (reproducible). Then `buildah push` to an OCI archive.
#   5. Each archive is unpacked and checked: config (user 65532, entrypoint/cmd, workdir), file
#      list and ownership, and the binaries run from the unpacked root filesystem as UID 65532
#      (--version; the operator prints its install manifest; the gateway serves the web app; the
#      web app's /bin/cp runs the init-container command).
#
# Environment: IMAGE_REGISTRY (default quay.io/virt-gateway), IMAGE_TAG (default: the workspace
# version), SOURCE_DATE_EPOCH (default: the last commit's time), SKIP_APT=1 (no apt-get).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=$root/target/images
registry=${IMAGE_REGISTRY:-quay.io/virt-gateway}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
tag=${IMAGE_TAG:-$version}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
target=x86_64-unknown-linux-gnu

started=$SECONDS
step_started=$SECONDS
step() {
    echo
    echo "==> [images $((SECONDS - started))s] $*"
    step_started=$SECONDS
}
done_step() { echo "    ($((SECONDS - step_started))s)"; }
fail() {
    echo "images: FAILED: $*" >&2
    exit 1
}

[[ $(uname -m) == x86_64 ]] || fail "only x86_64 is supported (found $(uname -m))"
[[ $(id -u) == 0 ]] || fail "run as root: buildah's chroot isolation and the checks' chroot need it (no rootless setup here)"
[[ -n $version ]] || fail "cannot read the workspace version from Cargo.toml"

# ---------------------------------------------------------------------------------------------
step "1/5 Debian packages"
packages=(buildah busybox-static jq binutils ca-certificates)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "    all present: ${packages[*]}"
elif [[ ${SKIP_APT:-} == 1 ]]; then
    fail "missing packages ${missing[*]} and SKIP_APT=1"
else
    echo "    installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "    $(buildah --version)"
busybox_version=$(dpkg-query -W -f='${Version}' busybox-static)
echo "    busybox-static $busybox_version"
done_step

# ---------------------------------------------------------------------------------------------
step "2/5 web app -> target/images/web/public"
if [[ ! -f web/node_modules/@novnc/novnc/core/rfb.js ]]; then
    (cd web && npm ci --no-audit --no-fund)
fi
rm -rf "$out/web"
(cd web && WEB_DIST="$out/web/public" npm run --silent build)
[[ -f $out/web/public/index.html ]] || fail "the web build wrote no index.html"
echo "    $(find "$out/web/public" -type f | wc -l) files, $(du -sh "$out/web/public" | cut -f1)"
done_step

# ---------------------------------------------------------------------------------------------
step "3/5 static release binaries ($target, +crt-static; several minutes when cold)"
cargo_home=${CARGO_HOME:-$HOME/.cargo}
export RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols --remap-path-prefix=$root=/src --remap-path-prefix=$cargo_home=/cargo"
# A target directory of its own: the workspace's other release builds select other packages, so
# cargo's shared host artifacts (proc macros, build scripts) would be rebuilt back and forth.
cargo build --release --locked --target "$target" --target-dir "$out/cargo" \
    -p kube-gateway -p virt-gateway-operator
bin=$out/cargo/$target/release
for b in kube-gateway virt-gateway-operator; do
    if readelf -l "$bin/$b" | grep -q 'program interpreter'; then
        fail "$bin/$b is dynamically linked"
    fi
    echo "    $b: static, $(du -h "$bin/$b" | cut -f1)"
done
done_step

# ---------------------------------------------------------------------------------------------
step "4/5 images (buildah bud, FROM scratch, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
storage=(--root "$out/storage" --runroot "$out/run" --storage-driver vfs)
buildah "${storage[@]}" rm --all >/dev/null 2>&1 || true
buildah "${storage[@]}" rmi --all --force >/dev/null 2>&1 || true

declare -A name=(
    [operator]="$registry/virt-gateway-operator:$tag"
    [gateway]="$registry/kube-gateway:$tag"
    [web-app]="$registry/kube-gateway-web-app:$tag"
)
declare -A archive=(
    [operator]="$out/virt-gateway-operator.oci.tar"
    [gateway]="$out/kube-gateway.oci.tar"
    [web-app]="$out/kube-gateway-web-app.oci.tar"
)
images=(operator gateway web-app)

for image in "${images[@]}"; do
    ctx=$out/context/$image
    rm -rf "$ctx"
    mkdir -p "$ctx"
    case $image in
        operator) bash images/rootfs.sh operator "$ctx/rootfs" --binary "$bin/virt-gateway-operator" ;;
        gateway) bash images/rootfs.sh gateway "$ctx/rootfs" --binary "$bin/kube-gateway" --web "$out/web/public" ;;
        web-app) bash images/rootfs.sh web-app "$ctx/rootfs" --cp /bin/busybox --web "$out/web/public" \
            --cp-copyright /usr/share/doc/busybox-static/copyright ;;
    esac
    ids=()
    for attempt in 1 2; do
        buildah "${storage[@]}" bud --quiet --isolation chroot --pull=never \
            --timestamp "$SOURCE_DATE_EPOCH" \
            --build-arg ARTIFACTS=prebuilt --build-arg VERSION="$tag" --build-arg REVISION="$revision" \
            -f "images/$image.Dockerfile" -t "${name[$image]}" --iidfile "$ctx/iid-$attempt" "$ctx" >/dev/null
        ids+=("$(cat "$ctx/iid-$attempt")")
    done
    [[ ${ids[0]} == "${ids[1]}" ]] ||
        fail "$image is not reproducible: two builds from the same files gave ${ids[0]} and ${ids[1]}"
    rm -f "${archive[$image]}"
    buildah "${storage[@]}" push --quiet "${name[$image]}" "oci-archive:${archive[$image]}:${name[$image]}"
    echo "    ${name[$image]}  id ${ids[0]}  (built twice: identical)"
done
done_step

# ---------------------------------------------------------------------------------------------
step "5/5 checks of the OCI archives"
# Runs a command as UID/GID 65532 with ROOTFS as / and DIR as the working directory: the
# unpacked image, as a container runtime would start it (minus namespaces).
as_image() {
    local rootfs=$1 dir=$2
    shift 2
    unshare --root="$rootfs" --wd="$dir" --setuid 65532 --setgid 65532 "$@"
}

check_image() {
    local image=$1 expect_entrypoint=$2 expect_cmd=$3 expect_workdir=$4
    local dir=$out/check/$image
    rm -rf "$dir"
    mkdir -p "$dir/layout" "$dir/rootfs"
    tar -C "$dir/layout" -xf "${archive[$image]}"
    local blobs=$dir/layout/blobs/sha256
    local manifest config
    manifest=$(jq -r '.manifests[0].digest' "$dir/layout/index.json")
    config=$(jq -r '.config.digest' "$blobs/${manifest#sha256:}")
    local cfg=$blobs/${config#sha256:}
    local user entrypoint cmd workdir os arch
    user=$(jq -r '.config.User' "$cfg")
    entrypoint=$(jq -c '.config.Entrypoint' "$cfg")
    cmd=$(jq -c '.config.Cmd' "$cfg")
    workdir=$(jq -r '.config.WorkingDir // ""' "$cfg")
    os=$(jq -r '.os' "$cfg")
    arch=$(jq -r '.architecture' "$cfg")
    [[ $user == 65532:65532 ]] || fail "$image: user is '$user', want 65532:65532"
    [[ $entrypoint == "$expect_entrypoint" ]] || fail "$image: entrypoint $entrypoint, want $expect_entrypoint"
    [[ $cmd == "$expect_cmd" ]] || fail "$image: cmd $cmd, want $expect_cmd"
    [[ $workdir == "$expect_workdir" ]] || fail "$image: workdir '$workdir', want '$expect_workdir'"
    [[ $os/$arch == linux/amd64 ]] || fail "$image: platform $os/$arch"
    local created
    created=$(jq -r '.created' "$cfg")
    local layers
    layers=$(jq -r '.layers[].digest' "$blobs/${manifest#sha256:}")
    [[ $(wc -l <<<"$layers") == 1 ]] || fail "$image: $(wc -l <<<"$layers") layers, want 1"
    local layer=$blobs/${layers#sha256:}
    # Ownership and modes: everything root-owned, nothing setuid/setgid or world-writable.
    local bad
    bad=$(tar --numeric-owner -tvf "$layer" | awk '$2 != "0/0" || $1 ~ /[sS]/ || $1 ~ /^.{8}w/')
    [[ -z $bad ]] || fail "$image: unexpected ownership or modes:
$bad"
    tar --numeric-owner -C "$dir/rootfs" -xpf "$layer"
    local size
    size=$(du -h "${archive[$image]}" | cut -f1)
    echo "    $image: ${name[$image]}"
    echo "      manifest $manifest, created $created, 1 layer, archive $size"
    echo "      user $user, entrypoint $entrypoint, cmd $cmd, workdir '${workdir}'"
}

need_files() {
    local image=$1
    shift
    for f in "$@"; do
        [[ -e $out/check/$image/rootfs/$f ]] || fail "$image: /$f is missing"
    done
}

# The operator.
check_image operator '["/usr/local/bin/virt-gateway-operator"]' null ''
rootfs=$out/check/operator/rootfs
need_files operator usr/local/bin/virt-gateway-operator etc/passwd etc/group etc/nsswitch.conf \
    etc/ssl/certs/ca-certificates.crt
v=$(as_image "$rootfs" / /usr/local/bin/virt-gateway-operator --version) ||
    fail "operator: --version failed in the image's root filesystem"
[[ $v == *"$version"* ]] || fail "operator: --version printed '$v', want $version"
echo "      runs as 65532 from the image: '$v'"
as_image "$rootfs" / /usr/local/bin/virt-gateway-operator manifests >"$out/check/operator/manifest.yaml" ||
    fail "operator: 'virt-gateway-operator manifests' failed in the image"
cmp -s "$out/check/operator/manifest.yaml" deploy/virt-gateway-operator.yaml ||
    fail "operator: the image's 'manifests' output differs from deploy/virt-gateway-operator.yaml"
echo "      'virt-gateway-operator manifests' in the image = deploy/virt-gateway-operator.yaml"

# The gateway.
check_image gateway '["/app/kube-gateway"]' null /app
rootfs=$out/check/gateway/rootfs
need_files gateway app/kube-gateway app/web/public/index.html app/web/public/login.html \
    app/web/public/console.html app/web/public/noVNC/vnc_lite.html etc/ssl/certs/ca-certificates.crt
diff -r "$out/web/public" "$rootfs/app/web/public" >/dev/null ||
    fail "gateway: /app/web/public differs from the web build"
v=$(as_image "$rootfs" /app /app/kube-gateway --version) ||
    fail "gateway: --version failed in the image's root filesystem"
[[ $v == *"$version"* ]] || fail "gateway: --version printed '$v', want $version"
echo "      runs as 65532 from the image: '$v'"
# Gen B's command, relative to WORKDIR, with its default web root ./web/public: the gateway
# serves the baked-in web app.
port=$((20000 + RANDOM % 20000))
# `exec` in the subshell, so that $! is the gateway itself (unshare execs it) and kill reaches it.
(exec unshare --root="$rootfs" --wd=/app --setuid 65532 --setgid 65532 ./kube-gateway \
    -api-server=https://127.0.0.1:9 -oauth-server-disable -k8s-bearer-token-passthrough=true \
    -listen="http://127.0.0.1:$port") >"$out/check/gateway/serve.log" 2>&1 &
gateway_pid=$!
trap 'kill "$gateway_pid" 2>/dev/null || true' EXIT
served=''
for _ in $(seq 1 50); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
        served=1
        break
    fi
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.2
done
if [[ -z $served ]]; then
    kill "$gateway_pid" 2>/dev/null || true
    fail "gateway: did not serve on 127.0.0.1:$port from the image; its log:
$(cat "$out/check/gateway/serve.log")"
fi
page_ok=''
if curl -fsS "http://127.0.0.1:$port/" | cmp -s - "$out/web/public/index.html" &&
    curl -fsS -o /dev/null "http://127.0.0.1:$port/noVNC/vnc_lite.html"; then
    page_ok=1
fi
kill "$gateway_pid"
wait "$gateway_pid" 2>/dev/null || true
trap - EXIT
kill -0 "$gateway_pid" 2>/dev/null && fail "gateway: the test gateway (pid $gateway_pid) did not stop"
[[ -n $page_ok ]] || fail "gateway: / or /noVNC/vnc_lite.html was not the baked-in web app"
echo "      './kube-gateway ...' from WORKDIR /app serves the baked-in web app (/, /noVNC/vnc_lite.html)"

# The web app.
contract='["/bin/cp","-r","/data/web/public","/app/web/"]'
check_image web-app null "$contract" /data
rootfs=$out/check/web-app/rootfs
need_files web-app bin/cp data/web/public/index.html data/web/public/noVNC/vnc_lite.html \
    usr/share/doc/busybox-static/copyright
diff -r "$out/web/public" "$rootfs/data/web/public" >/dev/null ||
    fail "web-app: /data/web/public differs from the web build"
[[ $(find "$rootfs" -type f -perm -u+x | sed "s#^$rootfs##") == /bin/cp ]] ||
    fail "web-app: executables other than /bin/cp: $(find "$rootfs" -type f -perm -u+x)"
# The init container: an emptyDir (writable by the pod's user) at /app/web, the command from the
# image config (= the operator's and Gen B's).
install -d -o 65532 -g 65532 "$rootfs/app/web"
mapfile -t init_cmd < <(jq -r '.[]' <<<"$contract")
as_image "$rootfs" /data "${init_cmd[@]}" || fail "web-app: '${init_cmd[*]}' failed in the image"
diff -r "$rootfs/data/web/public" "$rootfs/app/web/public" >/dev/null ||
    fail "web-app: the init-container copy differs from /data/web/public"
echo "      init container '${init_cmd[*]}' as 65532 copies the web app"
done_step

echo
echo "images: OK in $((SECONDS - started))s"
for image in "${images[@]}"; do
    echo "  ${archive[$image]#"$root"/}  ${name[$image]}"
done
echo "push: skopeo copy oci-archive:target/images/kube-gateway.oci.tar docker://REGISTRY/kube-gateway:$tag (see images/README.md)"
