#!/usr/bin/env bash
# Install what cxm needs to build and test on Debian 12, skipping what is
# already there. Runs apt-get as root (or through sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
  liblmdb-dev libjemalloc-dev libssl-dev
  # the event bus between separate service binaries: NATS JetStream
  libnats-dev nats-server
  # EASE solves with LAPACK on OpenBLAS
  libopenblas-dev liblapack-dev
  # the C++ gRPC peer the benchmarks compare against, and h2load
  libgrpc++-dev protobuf-compiler-grpc nghttp2-client
  # GetScores' time zones: the IANA TZif files in /usr/share/zoneinfo (libshared tz.c)
  tzdata
  # cxm-gen's test recovers the planted structure with a standard-library script
  # (and tests/fuzz/make_corpus.py writes the fuzz seeds)
  python3
  # the fuzz stage of tests/run.sh: clang with libFuzzer (-fsanitize=fuzzer
  # comes from libclang-rt-14-dev's libclang_rt.fuzzer-x86_64.a)
  clang libclang-rt-14-dev
)
# buf (proto lint) comes from the npm registry; a machine with Node.js
# installed some other way needs no Debian npm.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
