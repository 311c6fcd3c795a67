#!/usr/bin/env bash
# Lays out the root filesystem of one virt-gateway image from already-built artifacts. The single
# definition of what each image contains: images/build.sh runs it on this machine, and the
# Dockerfiles' "source" stages run it inside a builder container.
#
#   rootfs.sh operator OUT --binary PATH [--ca-bundle FILE]
#   rootfs.sh gateway  OUT --binary PATH --web DIR [--ca-bundle FILE]
#   rootfs.sh web-app  OUT --cp PATH --web DIR [--cp-copyright FILE]
#
# OUT must not exist. Every file is written with an explicit mode (the umask and the source
# files' modes do not matter) and owned by the caller (root in a build); the image user 65532
# ("nonroot", as in distroless) owns nothing and needs nothing writable in the image.
set -euo pipefail

die() { echo "rootfs.sh: $*" >&2; exit 2; }

[[ $# -ge 2 ]] || die "usage: rootfs.sh operator|gateway|web-app OUT [options]"
image=$1 out=$2
shift 2
binary='' web='' cp_bin='' cp_copyright='' ca_bundle=/etc/ssl/certs/ca-certificates.crt
while [[ $# -gt 0 ]]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --web) web=$2; shift 2 ;;
        --cp) cp_bin=$2; shift 2 ;;
        --cp-copyright) cp_copyright=$2; shift 2 ;;
        --ca-bundle) ca_bundle=$2; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
[[ -e $out ]] && die "$out already exists"

need_file() { [[ -f $2 ]] || die "$1: $2 is not a file"; }
need_static() {
    need_file "$1" "$2"
    # A dynamically linked binary (one with a program interpreter, ld-linux) would not start in
    # an image without a libc.
    command -v readelf >/dev/null || die "readelf (binutils) is needed to check $2"
    if LC_ALL=C readelf -l "$2" | grep -q 'program interpreter'; then
        die "$1: $2 is dynamically linked; build it with -C target-feature=+crt-static"
    fi
}

# Copies a directory tree with normalised modes: directories 0755, files 0644.
copy_tree() {
    local from=$1 to=$2
    [[ -d $from ]] || die "$from is not a directory"
    mkdir -p "$to"
    cp -R --no-preserve=mode,ownership,timestamps "$from/." "$to/"
    find "$to" -type d -exec chmod 0755 {} +
    find "$to" -type f -exec chmod 0644 {} +
    if [[ -n $(find "$to" ! -type d ! -type f) ]]; then
        die "$from holds something other than files and directories (symlinks are not allowed)"
    fi
}

# /etc: the non-root user and group the images run as, and name-service order for static glibc
# (files, then DNS; the kubelet mounts /etc/hosts and /etc/resolv.conf).
common_etc() {
    install -d -m 0755 "$out/etc"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$out/etc/group"
    printf '%s\n' 'hosts: files dns' 'networks: files' >"$out/etc/nsswitch.conf"
    chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
}

ca_certificates() {
    need_file "CA bundle" "$ca_bundle"
    install -D -m 0644 "$ca_bundle" "$out/etc/ssl/certs/ca-certificates.crt"
}

mkdir -p "$out"
chmod 0755 "$out"
case $image in
    operator)
        need_static "--binary" "$binary"
        common_etc
        ca_certificates
        install -D -m 0755 "$binary" "$out/usr/local/bin/virt-gateway-operator"
        ;;
    gateway)
        # WORKDIR /app: Gen B's command is ./kube-gateway and its default web root ./web/public.
        need_static "--binary" "$binary"
        [[ -f $web/index.html ]] || die "--web: $web/index.html is missing (build the web app first)"
        common_etc
        ca_certificates
        install -D -m 0755 "$binary" "$out/app/kube-gateway"
        copy_tree "$web" "$out/app/web/public"
        ;;
    web-app)
        # The webAppImage contract (Gen B): an init container runs
        #   /bin/cp -r /data/web/public /app/web/
        # so the image holds /data/web/public and a /bin/cp that runs without a libc or shell.
        need_static "--cp" "$cp_bin"
        [[ -f $web/index.html ]] || die "--web: $web/index.html is missing (build the web app first)"
        common_etc
        install -D -m 0755 "$cp_bin" "$out/bin/cp"
        if [[ -n $cp_copyright ]]; then
            need_file "--cp-copyright" "$cp_copyright"
            install -D -m 0644 "$cp_copyright" "$out/usr/share/doc/busybox-static/copyright"
        fi
        copy_tree "$web" "$out/data/web/public"
        ;;
    *) die "unknown image $image (operator, gateway, web-app)" ;;
esac
