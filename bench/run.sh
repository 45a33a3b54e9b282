#!/usr/bin/env bash
# One command for the benchmark: installs what it needs, builds, runs bench/bench.py.
#   bash bench/run.sh            full run (about 10-20 minutes), results in bench/results.md
#   bash bench/run.sh --smoke    tiny run that checks the script works
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in rsync iperf3 nc python3 fio; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# rsync over ssh is the encrypted peer TLS is compared with.
[ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null 2>&1 || need+=(sshd)
if [ ${#need[@]} -gt 0 ]; then
  packages=()
  for tool in "${need[@]}"; do
    case "$tool" in
      nc) packages+=(netcat-openbsd) ;;
      sshd) packages+=(openssh-server openssh-client) ;;
      *) packages+=("$tool") ;;
    esac
  done
  echo "installing: ${packages[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get install -y "${packages[@]}" >/dev/null 2>&1 \
      || { $sudo_cmd apt-get update >/dev/null 2>&1 && $sudo_cmd apt-get install -y "${packages[@]}" >/dev/null 2>&1; } \
      || echo "could not install ${packages[*]}; their columns will read n/a"
  fi
fi

if [ "${1:-}" = "--smoke" ]; then
  cargo build --quiet --bins
  exec python3 bench/bench.py --bin-dir target/debug --out bench/out-smoke "$@"
fi
cargo build --quiet --release --bins
exec python3 bench/bench.py "$@"
