#!/usr/bin/env bash
# One screenshot per main view of ftc-gui, under Xvfb, into gui/screenshots/*.png.
#
#   bash gui/screenshots.sh
#
# Installs what it needs (Xvfb, xdotool, x11-apps, imagemagick) with apt-get when missing,
# starts a throwaway fts with a few files and users, logs the window in with a saved login
# (`ftc login` with the connect string fts prints), and captures each view. Rendering
# differs between machines, so these pictures are for people (the README), never compared
# in tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/gui/screenshots"
mkdir -p "$out"
need=()
for tool in Xvfb:xvfb xdotool:xdotool xwd:x11-apps import:imagemagick; do
  command -v "${tool%%:*}" > /dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -q "${need[@]}"
fi
cargo build -q --manifest-path "$root/Cargo.toml" -p ft-server -p ft-client -p ft-gui
bin="$root/target/debug"
work=$(mktemp -d)
cleanup() {
  kill "${fts_pid:-}" "${xvfb_pid:-}" "${listener_pid:-}" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export XDG_CONFIG_HOME="$work/config" HOME="$work/home"
mkdir -p "$HOME" "$work/files/holiday"
"$bin/fts" --dir "$work/store" --listen 127.0.0.1:0 > "$work/fts.out" 2>/dev/null &
fts_pid=$!
for _ in $(seq 100); do grep -q 'ft://' "$work/fts.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 1p "$work/fts.out" | sed 's/^listening on //')
connect=$(grep -o 'ft://[^ ]*' "$work/fts.out" | head -1)
"$bin/ftc" login "$connect" > /dev/null
bob=$("$bin/fts" --dir "$work/store" user add bob --role write | tail -n 1)
for name in report.pdf budget.xlsx holiday/beach.jpg holiday/hills.jpg; do
  head -c $((RANDOM * 40)) /dev/urandom > "$work/files/$name"
done
"$bin/ftc" send "$addr" "$work/files/report.pdf" "$work/files/holiday" -q > /dev/null
FTC_USER=bob FTC_TOKEN=$bob "$bin/ftc" listen "$addr" -o "$work/bob" > /dev/null 2>&1 &
listener_pid=$!
Xvfb :77 -screen 0 900x600x24 > /dev/null 2>&1 &
xvfb_pid=$!
export DISPLAY=:77
sleep 1
for view in connect send files people history; do
  extra=()
  [ "$view" = send ] && extra=(--add "$work/files/budget.xlsx" --add "$work/files/report.pdf")
  "$bin/ftc-gui" --view "$view" --connect "${extra[@]}" > /dev/null 2>&1 &
  gui=$!
  sleep 3
  import -window root "$out/$view.png"
  kill "$gui" 2> /dev/null || true
  wait "$gui" 2> /dev/null || true
done
echo "screenshots in $out"
