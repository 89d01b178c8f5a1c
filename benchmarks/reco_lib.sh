# shellcheck shell=bash
# reco_lib.sh - helpers shared by reco_rpc.sh and reco_peer.sh (sourced).
# bench needs BIN, DURATION, WORK, target and a die function.

# field NAME JSON: a number of cxm-bench's one-line JSON.
field() { grep -o "\"$1\":[^,}]*" <<<"$2" | head -1 | cut -d: -f2; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f\n", a / b}'; }
# bench ARGS...: one cxm-bench run against $target; its JSON line, after
# checking that calls completed and none failed.
bench() {
  local out
  out=$("$BIN/cxm-bench" --target "$target" --duration "${DURATION}s" --warmup 1s --json "$@" \
    2>"$WORK/bench.err") || die "cxm-bench $*: $(cat "$WORK/bench.err")"
  [[ $(field errors "$out") == 0 ]] || die "cxm-bench $*: calls failed: $out"
  [[ $(field completed "$out") != 0 ]] || die "cxm-bench $*: no call completed"
  echo "$out"
}

# Per-round results of two servers or methods, A and B: A's and B's 1x1 p50
# and p99 and 2x32 QPS, and the ratios A/B taken within each round.
ap50=() ap99=() aq=() bp50=() bp99=() bq=() r50=() r99=() rqs=()
# pair_round ROUND NAME_A A_1x1 A_2x32 NAME_B B_1x1 B_2x32: record one round
# (cxm-bench JSON lines) and print its two rows.
pair_round() {
  ap50+=("$(field p50_us "$3")") ap99+=("$(field p99_us "$3")") aq+=("$(field qps "$4")")
  bp50+=("$(field p50_us "$6")") bp99+=("$(field p99_us "$6")") bq+=("$(field qps "$7")")
  r50+=("$(ratio "${ap50[-1]}" "${bp50[-1]}")") r99+=("$(ratio "${ap99[-1]}" "${bp99[-1]}")")
  rqs+=("$(ratio "${aq[-1]}" "${bq[-1]}")")
  printf '%-6s %-10s %10s %10s %10.0f\n' "$1" "$2" "${ap50[-1]}" "${ap99[-1]}" "${aq[-1]}"
  printf '%-6s %-10s %10s %10s %10.0f\n' "$1" "$5" "${bp50[-1]}" "${bp99[-1]}" "${bq[-1]}"
}
