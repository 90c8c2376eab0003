#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) from the committed seeds and
# minimized corpora, then merges what each run found into corpus-min/ (which
# engine/tests/fuzz_replay.rs replays in CI). Prints each target's executions;
# exits non-zero when any target found a crash (its input is in artifacts/).
# Needs cargo-fuzz; on a stable toolchain RUSTC_BOOTSTRAP=1 stands in for nightly.
# Set JOBS to run that many targets at once (default 1).
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
jobs=${JOBS:-1}
targets=(table_file ngram_lines npy_file match_tokens model_table)
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null || exit 1
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs
run() {
  local t=$1
  mkdir -p "corpus/$t" "corpus-min/$t" "artifacts/$t"
  local dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  dirs+=("corpus-min/$t")
  "$bin/$t" "${dirs[@]}" -max_total_time="$secs" -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
    >"logs/$t.log" 2>&1
  echo $? >"logs/$t.rc"
}
running=0
for t in "${targets[@]}"; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
failed=0
for t in "${targets[@]}"; do
  rc=$(cat "logs/$t.rc")
  execs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "logs/$t.log" | grep -oE '[0-9]+$')
  crashes=$(find "artifacts/$t" -type f | wc -l)
  echo "$t: ${secs}s, ${execs:-?} executions, exit $rc, $crashes crash inputs"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    grep -E "ERROR|panicked|SUMMARY" "logs/$t.log" | head -5
  fi
  # Keep a minimized corpus for the replay test.
  tmp=$(mktemp -d)
  "$bin/$t" -merge=1 "$tmp" "corpus/$t" "corpus-min/$t" >/dev/null 2>&1 && rm -rf "corpus-min/$t" && mv "$tmp" "corpus-min/$t"
done
exit $failed
