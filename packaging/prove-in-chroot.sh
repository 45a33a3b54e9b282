#!/usr/bin/env bash
# Proves the .debs on a fresh Debian 12: a minimal root made by debootstrap, both packages
# installed there by apt, fts started in it the way the service starts it (the unit's
# ExecStart, as a user of the service's dynamic range, umask 0077, storing into its state
# directory), and the packaged ftc, run from outside, logging in with the connect string fts
# printed, sending, listing and getting files over loopback, checked by hash; then SIGTERM
# must stop fts cleanly. systemd does not run in the chroot: the service's start by systemd
# and the unit's sandbox are not exercised here (the tests check the unit with
# systemd-analyze where it is installed).
#
# Usage, as root:  bash packaging/prove-in-chroot.sh [--debs DIR] [--mirror URL]
#   --debs DIR    take ft-server_*.deb and ft-client_*.deb from DIR (the newest of each)
#                 instead of building them with packaging/build-debs.sh
#   --mirror URL  the Debian mirror (default: the one apt uses here, else deb.debian.org)
# Needs debootstrap (apt-get install debootstrap). Everything it makes, mounts or starts is
# removed or stopped when it exits, fails or is interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "prove-in-chroot: $*" >&2
    exit 1
}

debs_dir=""
mirror=""
while [ $# -gt 0 ]; do
    case "$1" in
    --debs) debs_dir=${2:?--debs needs a folder}; shift 2 ;;
    --mirror) mirror=${2:?--mirror needs a URL}; shift 2 ;;
    *) die "unknown argument '$1' (usage: see the top of $0)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts): run it with sudo"
command -v debootstrap >/dev/null || die "needs debootstrap: apt-get install debootstrap"

# The mirror apt uses for bookworm: a deb822 stanza whose Suites name it, or a one-line entry.
if [ -z "$mirror" ]; then
    mirror=$(
        {
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'BEGIN { RS = "" }
                /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t\n]|$)/ && match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/) {
                    uri = substr($0, RSTART, RLENGTH); sub(/.*URIs:[ \t]*/, "", uri); print uri }'
            sed -n 's/^deb[ \t]\+\(\[[^]]*\][ \t]\+\)\?\([^ \t]\+\)[ \t]\+bookworm[ \t].*/\2/p' \
                /etc/apt/sources.list 2>/dev/null
        } | head -n 1 || true
    )
    mirror=${mirror:-http://deb.debian.org/debian}
fi

# The dynamic user systemd would pick from (DynamicUser=yes), and a bound on every step.
service_uid=61184
step_timeout=900

work=$(mktemp -d /var/tmp/ft-prove.XXXXXX)
root=$work/root
fts_pid=""
step_pid=""

# `bounded SECONDS COMMAND...`: runs it under timeout, waited for in a way a signal to this
# script interrupts (timeout puts the command in a process group of its own, where a
# terminal's Ctrl-C does not reach); the cleanup stops it.
bounded() {
    local limit=$1 status=0
    shift
    timeout "$limit" "$@" &
    step_pid=$!
    wait "$step_pid" || status=$?
    step_pid=""
    return "$status"
}

# Every mount beneath $work, deepest first.
mounts_beneath_work() {
    awk -v prefix="$work/" 'index($2, prefix) == 1 { print $2 }' /proc/self/mounts | sort -r
}

cleanup() {
    local status=$?
    if [ -n "$step_pid" ]; then
        kill -TERM "$step_pid" 2>/dev/null || true
        wait "$step_pid" 2>/dev/null || true
    fi
    if [ -n "$fts_pid" ] && kill -0 "$fts_pid" 2>/dev/null; then
        kill -KILL "$fts_pid" 2>/dev/null || true
        wait "$fts_pid" 2>/dev/null || true
    fi
    local mount
    for mount in $(mounts_beneath_work); do
        umount "$mount" 2>/dev/null || umount -l "$mount" || true
    done
    # Never remove anything through a mount that is still there (the host's /dev).
    if [ -n "$(mounts_beneath_work)" ]; then
        echo "prove-in-chroot: still mounted beneath $work, left in place" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

timings=()
# `timed NAME COMMAND...`: runs it, records and prints how long it took.
timed() {
    local name=$1 start end
    shift
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    timings+=("$(printf '%s: %d.%01ds' "$name" $(((end - start) / 1000000000)) $(((end - start) / 100000000 % 10)))")
    echo "== ${timings[-1]}"
}

# A command inside the chroot, with a clean environment.
in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}

build_debs() {
    bounded "$step_timeout" bash packaging/build-debs.sh >"$work/build-debs.log" 2>&1 ||
        { tail -n 40 "$work/build-debs.log" >&2; die "packaging/build-debs.sh failed"; }
}

if [ -z "$debs_dir" ]; then
    debs_dir=target/debian
    timed "build the .debs" build_debs
fi
server_deb=$(ls -t "$debs_dir"/ft-server_*.deb 2>/dev/null | head -n 1 || true)
client_deb=$(ls -t "$debs_dir"/ft-client_*.deb 2>/dev/null | head -n 1 || true)
[ -n "$server_deb" ] && [ -n "$client_deb" ] || die "no ft-server and ft-client .debs in $debs_dir"
echo "packages: $server_deb $client_deb"

make_root() {
    echo "debootstrap --variant=minbase bookworm from $mirror"
    bounded "$step_timeout" debootstrap --variant=minbase bookworm "$root" "$mirror" \
        >"$work/debootstrap.log" 2>&1 ||
        { tail -n 40 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
}
timed "debootstrap" make_root

install_debs() {
    mount -t proc proc "$root/proc"
    mount --bind /dev "$root/dev"
    # No service may be started by a package inside the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    mkdir -p "$root/tmp/ft-debs"
    cp "$server_deb" "$client_deb" "$root/tmp/ft-debs/"
    bounded "$step_timeout" chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        /tmp/ft-debs/"$(basename "$server_deb")" /tmp/ft-debs/"$(basename "$client_deb")" \
        >"$work/apt.log" 2>&1 ||
        { tail -n 40 "$work/apt.log" >&2; die "apt-get install of the .debs failed"; }
    local file
    for file in /usr/bin/fts /usr/bin/ftc /etc/ft/fts.toml /usr/lib/systemd/system/ft-server.service \
        /usr/share/man/man1/fts.1.gz /usr/share/man/man1/ftc.1.gz \
        /usr/share/bash-completion/completions/ftc; do
        [ -e "$root$file" ] || die "the packages did not install $file"
    done
    echo "installed: $(in_root fts --version), $(in_root ftc --version)"
}
timed "install with apt" install_debs

# fts as the unit runs it: its ExecStart (the installed unit's own line), listening on
# loopback at a free port instead of every interface at 7878, as a user of systemd's dynamic
# range with the unit's umask and file limit (or this machine's hard limit), storing into
# the state directory systemd would make (StateDirectory=ft, mode 0700): /var/lib/ft inside
# the root, the `dir` of the installed fts.toml.
start_fts() {
    local exec_start out=$work/fts.out
    exec_start=$(sed -n 's/^ExecStart=//p' "$root/usr/lib/systemd/system/ft-server.service")
    [ -n "$exec_start" ] || die "the installed unit has no ExecStart"
    install -d -m 0700 -o "$service_uid" -g "$service_uid" "$root/var/lib/ft"
    echo "starting in the root: $exec_start --listen 127.0.0.1:0"
    (
        umask 0077
        # LimitNOFILE=65536, or as close as this machine's hard limit allows.
        ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -H -n)"
        # shellcheck disable=SC2086 # ExecStart is a command line: split it into words
        exec chroot --userspec="$service_uid:$service_uid" "$root" \
            /usr/bin/env -i PATH=/usr/bin:/bin RUST_LOG=info $exec_start --listen 127.0.0.1:0
    ) >"$out" 2>"$work/fts.err" &
    fts_pid=$!
    local waited=0
    until grep -q '^connect string' "$out"; do
        kill -0 "$fts_pid" 2>/dev/null || { cat "$work/fts.err" >&2; die "fts exited at start"; }
        [ "$waited" -lt 300 ] || { cat "$work/fts.err" >&2; die "fts printed no connect string in 30 s"; }
        sleep 0.1
        waited=$((waited + 1))
    done
    sed -n '1p' "$out"
    connect=$(sed -n 's/^connect string[^:]*: //p' "$out")
}
timed "start fts" start_fts

# The packaged ftc, run from outside the root, with a config folder of its own.
ftc=$root/usr/bin/ftc
export XDG_CONFIG_HOME=$work/ftc-config HOME=$work/home
unset FTC_SERVER FTC_USER FTC_TOKEN FTC_FINGERPRINT
mkdir -p "$HOME" "$work/send" "$work/got"

transfer() {
    # One file streamed in chunks, one small enough to be gathered in memory.
    head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$work/send/payload.bin"
    echo "a small note from $(hostname)" >"$work/send/note.txt"
    bounded 60 "$ftc" login "$connect"
    bounded 120 "$ftc" send --no-progress "$work/send/payload.bin" "$work/send/note.txt"
    local listing
    listing=$(timeout 60 "$ftc" list)
    echo "$listing"
    # The admin sees its files under their full names, in its namespace `admin`.
    bounded 120 "$ftc" get --no-progress admin/payload.bin admin/note.txt -o "$work/got"
    local name sent got stored
    for name in payload.bin note.txt; do
        grep -q " admin/$name\$" <<<"$listing" || die "ftc list does not show admin/$name"
        sent=$(sha256sum <"$work/send/$name")
        got=$(sha256sum <"$work/got/admin/$name")
        # The state directory inside the root.
        stored=$(sha256sum <"$root/var/lib/ft/admin/$name")
        [ "$sent" = "$got" ] && [ "$sent" = "$stored" ] ||
            die "$name: sent $sent, got back $got, stored $stored"
        [ "$(stat -c '%u %a' "$root/var/lib/ft/admin/$name")" = "$service_uid 600" ] ||
            die "$name is not the service user's own, mode 0600"
        echo "$name: the same SHA-256 sent, stored and got back (${sent%% *})"
    done
}
timed "login, send, list, get" transfer

stop_fts() {
    kill -TERM "$fts_pid"
    local waited=0
    while kill -0 "$fts_pid" 2>/dev/null && [ "$waited" -lt 450 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    kill -0 "$fts_pid" 2>/dev/null && die "fts still runs 45 s after SIGTERM"
    local status=0
    wait "$fts_pid" || status=$?
    fts_pid=""
    [ "$status" -eq 0 ] || { cat "$work/fts.err" >&2; die "fts exited $status on SIGTERM"; }
    echo "fts stopped on SIGTERM, exit 0"
}
timed "stop fts" stop_fts

echo "proved on Debian 12 ($mirror); time taken:"
printf '  %s\n' "${timings[@]}"
