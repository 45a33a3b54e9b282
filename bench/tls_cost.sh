#!/usr/bin/env bash
# What TLS costs: the same `ftc send` of one workload with two builds, runs alternating
# A B A B, each against a fresh `fts` on loopback; prints each build's median wall time.
#
#   git worktree add /tmp/ft-plain a82ad5e      # the last version without TLS (protocol 6)
#   (cd /tmp/ft-plain && CARGO_TARGET_DIR=/tmp/ft-plain-target cargo build --release --bins)
#   cargo build --release --bins
#   bash bench/tls_cost.sh /tmp/ft-plain-target/release target/release PATH... [--runs N]
#
# The builds' own flags are used: a build that prints a fingerprint and an admin token
# (TLS) is logged into with them; one that prints neither is plaintext.
set -euo pipefail
plain=$1 tls=$2; shift 2
runs=5 paths=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    *) paths+=("$1"); shift ;;
  esac
done

one_run() {  # BIN_DIR -> seconds of one ftc send
  local bin=$1 dir out addr fingerprint token start end
  dir=$(mktemp -d)
  "$bin/fts" --dir "$dir/store" --listen 127.0.0.1:0 > "$dir/out" 2>/dev/null &
  local pid=$!
  for _ in $(seq 200); do grep -q '^listening' "$dir/out" 2>/dev/null && break; sleep 0.01; done
  sleep 0.1
  addr=$(sed -n 1p "$dir/out" | sed 's/^listening on //')
  fingerprint=$(sed -n 2p "$dir/out" | sed -n 's/^fingerprint //p')
  token=$(sed -n 5p "$dir/out")
  start=$(date +%s.%N)
  FTC_USER=admin FTC_TOKEN="$token" FTC_FINGERPRINT="$fingerprint" XDG_CONFIG_HOME="$dir/config" \
    "$bin/ftc" send "$addr" "${paths[@]}" --no-progress > /dev/null
  end=$(date +%s.%N)
  kill "$pid"; wait "$pid" || true
  rm -rf "$dir"
  echo "$end - $start" | bc
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

a=() b=()
for i in $(seq "$runs"); do
  a+=("$(one_run "$plain")")
  b+=("$(one_run "$tls")")
done
pa=$(printf '%s\n' "${a[@]}" | median)
pb=$(printf '%s\n' "${b[@]}" | median)
echo "plaintext: median ${pa} s (${a[*]})"
echo "TLS:       median ${pb} s (${b[*]})"
echo "TLS / plaintext: $(echo "scale=3; $pb / $pa" | bc)"
