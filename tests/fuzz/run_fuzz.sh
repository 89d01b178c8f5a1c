#!/usr/bin/env bash
# Fuzz every target of a CXM_FUZZ build for a bounded time, one after the
# other, each starting from its committed corpus (tests/fuzz/corpus/<name>).
# Fails when any target crashes, leaks, times out or blows up its memory, naming the
# reproducer; rerun it with `BIN/fuzz_<name> REPRODUCER`.
#   tests/fuzz/run_fuzz.sh BIN_DIR [SECONDS_PER_TARGET (default 8, or CXM_FUZZ_SECONDS)]
# Twelve targets at 12 s took 3.3 min with start-up on a busy 2-core machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: run_fuzz.sh BIN_DIR [SECONDS]}
seconds=${2:-${CXM_FUZZ_SECONDS:-8}}
work=$(dirname "$bin")/fuzz-work
rm -rf "$work"
mkdir -p "$work/artifacts"

status=0
for target in "$bin"/fuzz_*; do
  name=${target##*/fuzz_}
  # New inputs go to a scratch directory, never into the committed corpus.
  mkdir -p "$work/corpus/$name"
  log=$work/$name.log
  if "$target" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$work/artifacts/$name-" \
      "$work/corpus/$name" "$here/corpus/$name" >"$log" 2>&1; then
    echo "fuzz $name: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" |
      grep -o '[0-9]*$') runs in ${seconds}s, no crash"
  else
    status=1
    echo "fuzz $name: FAILED; the end of its log ($log):"
    tail -n 40 "$log"
    for f in "$work/artifacts/$name-"*; do
      [ -e "$f" ] && echo "fuzz $name: reproducer $f (run: $target $f)"
    done
  fi
done
exit $status
