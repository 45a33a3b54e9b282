#!/usr/bin/env bash
# Builds target/debian/ft-server_*.deb and ft-client_*.deb: a release build, the man pages
# and shell completions generated from the binaries into target/packaging/, then cargo-deb
# (installed first if missing). Run from anywhere; needs no root.
set -euo pipefail
cd "$(dirname "$0")/.."

# The assets in server/ and client/Cargo.toml name target/packaging/ and target/release/.
unset CARGO_TARGET_DIR

if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi

cargo build --release --locked -p ft-server -p ft-client --bins

out=target/packaging
rm -rf "$out"
mkdir -p "$out/completions"
target/release/fts --man >"$out/fts.1"
target/release/ftc man >"$out/ftc.1"
target/release/ftc completions bash >"$out/completions/ftc.bash"
target/release/ftc completions zsh >"$out/completions/_ftc"
target/release/ftc completions fish >"$out/completions/ftc.fish"

# cargo-deb warns that the ../target/packaging/ assets "will not be built": they were, above.
debs=()
for package in ft-server ft-client; do
    # cargo-deb prints the path of the package it made.
    debs+=("$(cargo deb --no-build --locked -p "$package")")
done

if command -v lintian >/dev/null; then
    lintian --info --fail-on error,warning "${debs[@]}"
else
    echo "lintian not installed: packages not checked" >&2
fi
printf '%s\n' "${debs[@]}"
