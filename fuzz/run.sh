#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target of the auth core for a bounded time each.
#
#   fuzz/run.sh [SECONDS]     SECONDS per target, default 60 (`make fuzz` passes FUZZ_SECONDS)
#
# Exits non-zero if any target finds a crash (the reproducer is left in fuzz/artifacts/<target>/).
# Installs what is missing, showing progress: the nightly toolchain (cargo-fuzz needs it for the
# sanitizer flags) and cargo-fuzz itself (`cargo install cargo-fuzz --locked`).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS]  (a positive whole number of seconds per target)" >&2
  exit 2
fi
cd "$(dirname "$0")"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== installing the nightly toolchain (rustup toolchain install nightly --profile minimal)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked); this compiles it, a few minutes"
  cargo install cargo-fuzz --locked
fi

targets=(token_decode request_parse pem_keys)
echo "== building ${targets[*]}"
cargo +nightly fuzz build

failed=()
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  mkdir -p "corpus/$target"
  # The first directory collects new inputs (ignored by git); seeds/ holds the committed starting set.
  # -rss_limit_mb guards against unbounded allocation, -timeout against a slow input.
  if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "== FAILED: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
echo "== all fuzz targets ran ${seconds}s each without a crash"
