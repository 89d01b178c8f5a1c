#!/usr/bin/env bash
# cxm-gen end to end: reproducible from the seed, every protobuf stream
# decodes with counts matching truth.json, the planted structure is
# recoverable from the CSV, and bad flags are refused with exit 2.
#   gen_smoke.sh BIN_DIR GEN_DECODE
set -euo pipefail
bin=$1
decode=$2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/cxm-gen-smoke-XXXXXX)
trap 'rm -rf "$dir"' EXIT
gen() {
  "$bin/cxm-gen" --customers 5000 --days 180 --items 400 "$@" 2>>"$dir/log" || {
    cat "$dir/log"; exit 1; }
}

gen --seed 11 --out "$dir/a"
gen --seed 11 --out "$dir/b"
gen --seed 12 --out "$dir/c"
gen --seed 11 --formats csv --out "$dir/d"
diff -r "$dir/a" "$dir/b" || { echo "same seed, different files"; exit 1; }
for f in track.pb events.csv responses.csv truth.json; do
  if cmp -s "$dir/a/$f" "$dir/c/$f"; then echo "seeds 11 and 12 gave the same $f"; exit 1; fi
done
# The records do not depend on which formats are written.
for f in events.csv responses.csv ratings.csv customers.csv; do
  cmp "$dir/a/$f" "$dir/d/$f"
done

counts=$("$decode" "$dir/a")
python3 "$here/gen_recover.py" "$dir/a" "$counts"
# A stream cut inside a record is reported as damaged.
cp -r "$dir/a" "$dir/cut"
head -c -3 "$dir/a/track.pb" >"$dir/cut/track.pb"
if "$decode" "$dir/cut" >/dev/null 2>"$dir/out"; then echo "a cut track.pb decoded"; exit 1; fi
grep -q "track.pb: stream damaged" "$dir/out"

# Bad flags: exit 2 and a message naming the flag.
refuse() {
  local want=$1; shift
  set +e
  "$bin/cxm-gen" "$@" >"$dir/out" 2>&1
  local rc=$?
  set -e
  if [ "$rc" != 2 ] || ! grep -q -- "$want" "$dir/out"; then
    echo "cxm-gen $*: exit $rc, wanted 2 naming $want:"; cat "$dir/out"; exit 1
  fi
}
refuse --customers --customers 0 --out "$dir/x"
refuse --customers --customers 12abc --out "$dir/x"
refuse --days --days -3 --out "$dir/x"
refuse --seed --seed -1 --out "$dir/x"
refuse --items --items 20 --clusters 8 --out "$dir/x"
refuse --batch --batch 1001 --out "$dir/x"
refuse --formats --formats pb,xml --out "$dir/x"
refuse --out --customers 10
refuse --bogus --bogus 1 --out "$dir/x"
[ ! -e "$dir/x" ] || { echo "a refused run created its output directory"; exit 1; }
touch "$dir/file"
set +e; "$bin/cxm-gen" --customers 10 --out "$dir/file" 2>"$dir/out"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "a file of that name exists" "$dir/out" || {
  echo "--out naming a file: exit $rc"; cat "$dir/out"; exit 1; }
echo "gen smoke: ok"
