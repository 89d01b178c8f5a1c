# lib.sh - what the integration shell scripts share; source it.

# start_server LOG TRIES CMD...: run CMD, a server told to listen on
# 127.0.0.1:0, in the background with its output in LOG, and wait up to TRIES
# x 25 ms for its "listening on" line. Sets pid, and port once it listens;
# returns 1 when it did not start in time.
start_server() {
  local log=$1 tries=$2
  shift 2
  "$@" >"$log" 2>&1 &
  pid=$!
  port=""
  for _ in $(seq "$tries"); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://') || true
    [ -n "$port" ] && return 0
    sleep 0.025
  done
  return 1
}

# free_ports N: print the first of N consecutive loopback ports that nothing
# listens on (random, 20000-59999, 50 tries); print nothing when none found.
free_ports() {
  local n=$1 p q free
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    free=true
    for q in $(seq "$p" $((p + n - 1))); do
      (exec 3<>"/dev/tcp/127.0.0.1/$q") 2>/dev/null && free=false
    done
    $free && { echo "$p"; return 0; }
  done
  return 0
}

# expect STATUS TEXT ARGS...: "$bin/cxmctl" ARGS exits STATUS and prints TEXT
# (stdout and stderr together, left in $dir/out). The caller sets bin and dir
# and defines fail.
expect() {
  local want=$1 text=$2 status=0
  shift 2
  "$bin/cxmctl" "$@" >"$dir/out" 2>&1 || status=$?
  ((status == want)) || fail "cxmctl $*: exit $status, wanted $want: $(cat "$dir/out")"
  grep -qF -- "$text" "$dir/out" || fail "cxmctl $*: no \"$text\" in: $(cat "$dir/out")"
}

# taste_ratings PICKS TS0: a synthetic ratings CSV (user,item,rating,ts) on
# stdout, the same on every run: 300 users and 400 items in 10 taste
# clusters of 40. Each user draws PICKS to PICKS + 19 items, 85% from their
# own cluster (skewed towards its first items) and 15% from anywhere, so
# popularity alone is weak and co-occurrence is strong; user u's j-th draw
# is at time TS0 + 100u + j.
taste_ratings() {
  awk -v seed=7 -v picks="$1" -v ts0="$2" 'BEGIN {
    srand(seed); print "user,item,rating,ts"
    for (u = 0; u < 300; u++) {
      c = u % 10; n = picks + int(rand() * 20)
      delete seen
      for (j = 0; j < n; j++) {
        if (rand() < 0.85) i = c * 40 + int(40 * rand() * rand())
        else i = int(400 * rand())
        if (i in seen) continue
        seen[i] = 1
        printf "u%d,i%d,%d,%d\n", u, i, 1 + int(rand() * 5), ts0 + u * 100 + j
      }
    }
  }'
}
