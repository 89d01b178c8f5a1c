#!/usr/bin/env bash
# TLS and mutual TLS on a real cxmd with throwaway certificates made here
# with the openssl CLI, the certificate reloaded without a restart, and the
# listen policy (no unprotected non-loopback port unless --insecure).
#   tls_test.sh BIN_DIR CASE
# CASE: handshake, bad_server, mtls, reload, startup, listen_policy
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bin=$1
case=$2
dir=$(mktemp -d /tmp/cxm-tls-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL ($case): $*" >&2; exit 1; }
command -v openssl >/dev/null || { echo "SKIPPED: no openssl CLI"; exit 77; }

# --- certificates (EC P-256: quick to make) ---
ossl() { openssl "$@" >>"$dir/openssl.log" 2>&1 || fail "openssl $*: $(tail -3 "$dir/openssl.log")"; }
# ca NAME: a self-signed CA NAME.pem / NAME.key.
ca() { ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
         -subj "/CN=$1" -keyout "$dir/$1.key" -out "$dir/$1.pem"; }
# leaf NAME CA DAYS [EXT]: NAME.pem / NAME.key signed by CA for DAYS days
# (-1: already expired), with the extensions in EXT.
leaf() {
  ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$dir/$1.key" -out "$dir/$1.csr"
  printf '%s\n' "${4:-basicConstraints=CA:FALSE}" >"$dir/$1.ext"
  ossl x509 -req -in "$dir/$1.csr" -CA "$dir/$2.pem" -CAkey "$dir/$2.key" -CAcreateserial \
    -days "$3" -extfile "$dir/$1.ext" -out "$dir/$1.pem"
}
san="subjectAltName=IP:127.0.0.1,DNS:localhost"
ca ca1
ca ca2
leaf srv1 ca1 2 "$san"
leaf srv2 ca2 2 "$san" # the certificate a reload brings in: only ca2 verifies it
leaf expired ca1 -1 "$san"
leaf client1 ca1 2 "extendedKeyUsage=clientAuth"
leaf client2 ca2 2 "extendedKeyUsage=clientAuth"

# serve ARGS...: start cxmd on a free loopback port with ARGS; sets pid and target.
serve() {
  start_server "$dir/log" 400 "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" --grace 1s "$@" ||
    fail "cxmd $* did not start: $(cat "$dir/log")"
  target=127.0.0.1:$port
}
stop() { kill -TERM "$pid" && wait "$pid" || fail "cxmd did not drain and exit 0"; pid=""; }
# health_ok ARGS / health_fails STATUS ARGS: cxmctl health with ARGS.
health_ok() { expect 0 SERVING --target "$target" --timeout 5s "$@" health; }
health_fails() {
  local want=$1
  shift
  expect 1 "$want" --target "$target" --timeout 5s "$@" health
}

case $case in
handshake)
  serve --tls-cert "$dir/srv1.pem" --tls-key "$dir/srv1.key"
  # cxmd's own calls to profile would be plaintext: said at start.
  grep -q "host.client_tls_missing" "$dir/log" || fail "no host.client_tls_missing warning"
  health_ok --tls-ca "$dir/ca1.pem"
  CXM_TLS_CA="$dir/ca1.pem" health_ok
  # The name the certificate carries, connecting by address.
  health_ok --tls-ca "$dir/ca1.pem" --tls-server-name localhost
  health_fails UNAVAILABLE --tls-ca "$dir/ca1.pem" --tls-server-name other.example
  # A real RPC over TLS: a profile written and read back.
  expect 0 customer_id --target "$target" --tls-ca "$dir/ca1.pem" --json profile upsert \
    --identity email:tls@example.com --set tier=gold
  expect 0 gold --target "$target" --tls-ca "$dir/ca1.pem" profile get \
    --identity email:tls@example.com
  # Plaintext to a TLS port fails; so does a CA file that is no certificate.
  health_fails UNAVAILABLE
  expect 1 "no PEM certificate" --target "$target" --tls-ca "$dir/srv1.key" health
  expect 1 "cannot open" --target "$target" --tls-ca "$dir/nope.pem" health
  ;;
bad_server)
  # A CA that did not sign the server's certificate.
  serve --tls-cert "$dir/srv1.pem" --tls-key "$dir/srv1.key"
  health_fails UNAVAILABLE --tls-ca "$dir/ca2.pem"
  stop
  # An expired certificate: the server starts (and says it expired), clients refuse it.
  verdict=$(openssl verify -CAfile "$dir/ca1.pem" "$dir/expired.pem" 2>&1 || true)
  [[ $verdict == *expired* ]] || fail "openssl did not make an expired certificate: $verdict"
  serve --tls-cert "$dir/expired.pem" --tls-key "$dir/expired.key"
  grep -q "tls.cert_expired" "$dir/log" || fail "no tls.cert_expired warning: $(cat "$dir/log")"
  health_fails UNAVAILABLE --tls-ca "$dir/ca1.pem"
  ;;
mtls)
  # Clients must present a certificate from ca1; the in-process resolver
  # (journey through profile) is a client too and presents client1.
  serve --tls-cert "$dir/srv1.pem" --tls-key "$dir/srv1.key" --tls-client-ca "$dir/ca1.pem" \
    --client-tls-ca "$dir/ca1.pem" --client-tls-cert "$dir/client1.pem" \
    --client-tls-key "$dir/client1.key"
  ! grep -q "host.client_tls_missing" "$dir/log" || fail "client_tls_missing despite --client-tls-ca"
  health_fails UNAVAILABLE --tls-ca "$dir/ca1.pem"
  health_fails UNAVAILABLE --tls-ca "$dir/ca1.pem" --tls-cert "$dir/client2.pem" \
    --tls-key "$dir/client2.key"
  health_ok --tls-ca "$dir/ca1.pem" --tls-cert "$dir/client1.pem" --tls-key "$dir/client1.key"
  CXM_TLS_CA="$dir/ca1.pem" CXM_TLS_CERT="$dir/client1.pem" CXM_TLS_KEY="$dir/client1.key" health_ok
  expect 1 "does not match" --target "$target" --tls-ca "$dir/ca1.pem" \
    --tls-cert "$dir/client1.pem" --tls-key "$dir/client2.key" health
  good=(--target "$target" --tls-ca "$dir/ca1.pem" --tls-cert "$dir/client1.pem"
    --tls-key "$dir/client1.key")
  expect 0 "" "${good[@]}" journey track --identity email:m@example.com --touchpoint cart \
    --channel web --type add_to_cart
  for _ in $(seq 100); do
    "$bin/cxmctl" "${good[@]}" journey timeline --identity email:m@example.com >"$dir/out" 2>&1 || true
    grep -q add_to_cart "$dir/out" && break
    sleep 0.05
  done
  grep -q add_to_cart "$dir/out" || fail "the event was not resolved over mTLS: $(cat "$dir/out")"
  ;;
reload)
  cp "$dir/srv1.pem" "$dir/cur.pem"
  cp "$dir/srv1.key" "$dir/cur.key"
  serve --tls-cert "$dir/cur.pem" --tls-key "$dir/cur.key"
  health_ok --tls-ca "$dir/ca1.pem"
  # A broken pair (srv2's certificate, srv1's key) is refused and the old one kept.
  cp "$dir/srv2.pem" "$dir/cur.pem"
  kill -HUP "$pid"
  for _ in $(seq 200); do grep -q tls.reload_failed "$dir/log" && break; sleep 0.025; done
  grep -q "tls.reload_failed.*does not match" "$dir/log" ||
    fail "no reload failure logged: $(cat "$dir/log")"
  health_ok --tls-ca "$dir/ca1.pem"
  # SIGHUP with a good pair: new connections get srv2, which only ca2 verifies.
  cp "$dir/srv2.key" "$dir/cur.key"
  kill -HUP "$pid"
  for _ in $(seq 200); do grep -q tls.reloaded "$dir/log" && break; sleep 0.025; done
  health_ok --tls-ca "$dir/ca2.pem"
  health_fails UNAVAILABLE --tls-ca "$dir/ca1.pem"
  # The subject the server presents now, seen by openssl itself.
  # (Captured first: under pipefail, grep -q quitting early made s_client die
  # of SIGPIPE and failed the pipeline although the subject was there.)
  seen=$(echo | openssl s_client -connect "$target" -alpn h2 -CAfile "$dir/ca2.pem" 2>/dev/null ||
    true)
  grep -q "subject=CN = srv2" <<<"$seen" || fail "openssl s_client does not see srv2"
  # No signal: replacing the files (rename, as certificate tools do) is noticed.
  cp "$dir/srv1.pem" "$dir/new.pem" && mv "$dir/new.pem" "$dir/cur.pem"
  cp "$dir/srv1.key" "$dir/new.key" && mv "$dir/new.key" "$dir/cur.key"
  for _ in $(seq 100); do
    "$bin/cxmctl" --target "$target" --timeout 5s --tls-ca "$dir/ca1.pem" health >/dev/null 2>&1 &&
      break
    sleep 0.1
  done
  health_ok --tls-ca "$dir/ca1.pem"
  grep -q "received SIGHUP" "$dir/log" && fail "SIGHUP was taken as a stop"
  stop
  ;;
startup)
  # Unusable certificates stop the start with the flag and file named (exit 1).
  start() {
    local want=$1 text=$2 status=0
    shift 2
    "$bin/cxmd" --listen 127.0.0.1:0 --data "$dir/data" "$@" >"$dir/out" 2>&1 || status=$?
    ((status == want)) || fail "cxmd $*: exit $status, wanted $want: $(cat "$dir/out")"
    grep -qF -- "$text" "$dir/out" || fail "cxmd $*: no \"$text\" in: $(cat "$dir/out")"
  }
  start 1 "--tls-cert $dir/none.pem: cannot open: No such file" \
    --tls-cert "$dir/none.pem" --tls-key "$dir/srv1.key"
  start 1 "--tls-key $dir/srv2.key does not match the certificate in --tls-cert $dir/srv1.pem" \
    --tls-cert "$dir/srv1.pem" --tls-key "$dir/srv2.key"
  start 1 "--tls-cert $dir/srv1.key: no PEM certificate" \
    --tls-cert "$dir/srv1.key" --tls-key "$dir/srv1.key"
  start 1 "--tls-client-ca $dir/ca1.key: no PEM certificate" \
    --tls-cert "$dir/srv1.pem" --tls-key "$dir/srv1.key" --tls-client-ca "$dir/ca1.key"
  if [ "$(id -u)" != 0 ]; then # root reads anything
    cp "$dir/srv1.key" "$dir/locked.key" && chmod 000 "$dir/locked.key"
    start 1 "--tls-key $dir/locked.key: cannot open: Permission denied" \
      --tls-cert "$dir/srv1.pem" --tls-key "$dir/locked.key"
  fi
  start 2 "--tls-cert and --tls-key go together" --tls-cert "$dir/srv1.pem"
  start 2 "--tls-client-ca needs --tls-cert" --tls-client-ca "$dir/ca1.pem"
  ;;
listen_policy)
  # Every interface without TLS and authentication: refused, and said why.
  status=0
  "$bin/cxmd" --listen 0.0.0.0:0 --data "$dir/data" >"$dir/out" 2>&1 || status=$?
  ((status == 2)) || fail "cxmd --listen 0.0.0.0:0: exit $status, wanted 2: $(cat "$dir/out")"
  grep -q "is not a loopback address.*--insecure" "$dir/out" || fail "no reason: $(cat "$dir/out")"
  # TLS alone is not enough while authentication is off.
  status=0
  "$bin/cxmd" --listen 0.0.0.0:0 --data "$dir/data" --tls-cert "$dir/srv1.pem" \
    --tls-key "$dir/srv1.key" >"$dir/out" 2>&1 || status=$?
  ((status == 2)) || fail "TLS without auth on 0.0.0.0: exit $status, wanted 2"
  # listen_on ADDR ARGS: start cxmd on ADDR, wait until it listens, set target.
  listen_on() {
    local addr=$1
    shift
    "$bin/cxmd" --listen "$addr" --data "$dir/data" "$@" >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 400); do grep -q "listening on" "$dir/log" && break; sleep 0.025; done
    port=$(grep -o 'listening on [^ ]*:[0-9]*' "$dir/log" | sed 's/.*://')
    [ -n "$port" ] || fail "cxmd --listen $addr did not start: $(cat "$dir/log")"
    target=127.0.0.1:$port
  }
  # Loopback by name is allowed, without a warning.
  listen_on localhost:0
  grep -q server.insecure "$dir/log" && fail "a loopback listen was warned about"
  health_ok
  stop
  # --insecure: it starts, warns, and serves.
  listen_on 0.0.0.0:0 --insecure
  grep -q "warn server.insecure.*0.0.0.0:0 is reachable from other machines" "$dir/log" ||
    fail "no warn-level server.insecure line: $(cat "$dir/log")"
  health_ok
  stop
  ;;
*) fail "unknown case" ;;
esac
echo "tls $case: ok"
