#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) from the committed seeds.
# Needs cargo-fuzz; on a stable toolchain RUSTC_BOOTSTRAP=1 stands in for nightly.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
for t in table_file ngram_lines npy_file match_tokens; do
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "== $t (${secs}s)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" "${seeds[@]}" -- -max_total_time="$secs" 2>&1 | grep -E "^(#[0-9]+ *DONE|Done|==[0-9]+== ERROR|SUMMARY|thread .* panicked)" || true
done
