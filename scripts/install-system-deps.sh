#!/usr/bin/env bash
# Installs the Debian packages the tests need that a fresh machine lacks:
#   - tigervnc-standalone-server: Xvnc, the real VNC server behind the KubeVirt stand-in
#     (crates/kubevirt-standin);
#   - x11-xserver-utils: xsetroot, which paints each stand-in VM's screen its own colour;
#   - x11-utils: xmessage, which writes the VM's name on its screen;
#   - xfonts-base: the fonts xmessage draws with;
#   - chromium: the browser the web app's end-to-end tests drive (web/e2e, playwright-core).
# Idempotent: packages already installed are skipped, and `apt-get update` runs at most once per
# invocation (only when something is missing). Progress goes to stderr.
# Usage: scripts/install-system-deps.sh [--no-browser]
set -euo pipefail

packages=(tigervnc-standalone-server x11-xserver-utils x11-utils xfonts-base)
if [[ "${1:-}" != "--no-browser" ]]; then
    packages+=(chromium)
fi

missing=()
for p in "${packages[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        echo "system deps: $p already installed" >&2
    else
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system deps: nothing to install" >&2
    exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    SUDO="sudo"
fi

echo "system deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${missing[@]}"
echo "system deps: installed ${missing[*]} in $(( $(date +%s) - start ))s" >&2
