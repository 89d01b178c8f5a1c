#!/usr/bin/env bash
# `cmake --install` staged into a temporary DESTDIR: the binaries, the
# protos (which must compile on their own) and the systemd unit land where
# the README says, and the installed cxmd and cxmctl run.
#   install_test.sh BUILD_DIR BINDIR PROTO_DIR UNIT_DIR   (the last three absolute)
set -euo pipefail
build=$1 bindir=$2 protodir=$3 unitdir=$4
dest=$(mktemp -d /tmp/cxm-install-test-XXXXXX)
trap 'rm -rf "$dest"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

DESTDIR=$dest cmake --install "$build" >"$dest.log" 2>&1 || { cat "$dest.log"; fail "cmake --install"; }
rm -f "$dest.log"

for b in cxmd cxm-profile cxm-journey cxm-feedback cxm-personalisation cxmctl cxm-bench cxm-eval; do
  [ -x "$dest$bindir/$b" ] || fail "$bindir/$b is not installed"
done
for p in cxm/v1/common.proto cxm/v1/profile.proto cxm/v1/journey.proto cxm/v1/feedback.proto \
         cxm/v1/personalisation.proto grpc/health/v1/health.proto grpc/reflection/v1/reflection.proto \
         grpc/LICENSE; do
  [ -f "$dest$protodir/$p" ] || fail "$protodir/$p is not installed"
done
# The installed contract alone is enough to generate stubs from.
protoc -I"$dest$protodir" --descriptor_set_out=/dev/null \
  $(cd "$dest$protodir" && ls cxm/v1/*.proto) || fail "the installed protos do not compile"
unit=$dest$unitdir/cxmd.service
[ -f "$unit" ] || fail "$unitdir/cxmd.service is not installed"
grep -qx "ExecStart=$bindir/cxmd" "$unit" || fail "the unit does not start $bindir/cxmd: $(grep ExecStart "$unit")"
# Personal data: loopback unless configured, never root, hardened.
grep -qx "Environment=CXM_LISTEN=127.0.0.1:7400" "$unit" || fail "the unit does not bind loopback"
for k in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
         MemoryDenyWriteExecute=yes SystemCallFilter=@system-service LimitNOFILE=65536; do
  grep -qx "$k" "$unit" || fail "the unit lacks $k"
done

"$dest$bindir/cxmd" --help >"$dest/help" || fail "the installed cxmd --help exited $?"
grep -q -- "--listen" "$dest/help" || fail "the installed cxmd --help does not list --listen"
"$dest$bindir/cxmctl" --help >/dev/null || fail "the installed cxmctl --help exited $?"
echo "install: ok"
