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
