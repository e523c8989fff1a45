#!/usr/bin/env bash
# Installs what the build needs beyond the Rust toolchain, if it is missing:
# libclang (RocksDB's bindings are generated with bindgen at build time).
set -euo pipefail

have_libclang() {
    compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null ||
        compgen -G '/usr/lib/x86_64-linux-gnu/libclang-*.so*' >/dev/null ||
        compgen -G '/usr/lib/*/libclang.so*' >/dev/null
}

if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo is not on PATH; install a Rust toolchain first" >&2
    exit 1
fi

if ! have_libclang; then
    echo "install-deps: installing libclang-dev (needed by RocksDB's bindgen)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libclang-dev >/dev/null
fi

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
