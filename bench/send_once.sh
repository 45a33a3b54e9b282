#!/usr/bin/env bash
# One fresh `fts` on loopback and one `ftc send` of PATH... into it, then both gone: the unit
# a whole-process timer (`/usr/bin/time -v`, or any A/B runner alternating two builds)
# measures when comparing builds.
#
#   bash bench/send_once.sh BIN_DIR PATH...
#
# BIN_DIR holds `fts` and `ftc` (e.g. target/release). The store is made in a new directory
# under $BENCH_STORES (default /tmp/bench-stores) and kept: removing thousands of files would
# be timed too. Remove $BENCH_STORES after the comparison.
set -euo pipefail
bin=$1; shift
stores=${BENCH_STORES:-/tmp/bench-stores}
mkdir -p "$stores"
dir=$(mktemp -d -p "$stores")
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null' EXIT
"$bin/fts" --dir "$dir/store" --listen 127.0.0.1:0 > "$dir/out" 2>/dev/null &
pid=$!
for _ in $(seq 500); do [ "$(wc -l < "$dir/out")" -ge 5 ] && break; sleep 0.01; done
addr=$(sed -n 1p "$dir/out" | sed 's/^listening on //')
fingerprint=$(sed -n 2p "$dir/out" | sed -n 's/^fingerprint //p')
token=$(tail -n 1 "$dir/out")
FTC_USER=admin FTC_TOKEN="$token" FTC_FINGERPRINT="$fingerprint" XDG_CONFIG_HOME="$dir/config" \
  "$bin/ftc" send "$addr" "$@" --no-progress > /dev/null
