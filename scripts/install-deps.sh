#!/usr/bin/env bash
# Installs what the build needs beyond the Rust toolchain, if it is missing: libclang
# (RocksDB's bindings are generated with bindgen at build time), protoc (etcd-client's build
# generates its gRPC stubs), and etcd with etcdctl (scripts/bench-write.sh runs a real etcd
# cluster beside regionstore).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=0
# apt_install PACKAGE...: installs Debian packages, updating the package lists once.
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        $sudo apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo is not on PATH; install a Rust toolchain first" >&2
    exit 1
fi

# find-libclang.sh looks for exactly what bindgen's loader (clang-sys) loads. A base image often
# ships libclang-cpp.so.N (LLVM's C++ library), which does not count: only libclang-dev brings
# libclang.so with the C API, and clang's own headers next to it.
if ! "$here/find-libclang.sh" >/dev/null; then
    echo "install-deps: installing libclang-dev (needed by RocksDB's bindgen)"
    apt_install libclang-dev
    if ! found=$("$here/find-libclang.sh"); then
        echo "install-deps: libclang-dev is installed but no loadable libclang was found" >&2
        [ -z "${LIBCLANG_PATH+set}" ] ||
            echo "install-deps: LIBCLANG_PATH=$LIBCLANG_PATH is searched alone; unset it" >&2
        exit 1
    fi
    echo "install-deps: libclang at $found"
fi

# command package: the Debian package that brings each command.
for need in protoc:protobuf-compiler etcd:etcd-server etcdctl:etcd-client; do
    if ! command -v "${need%%:*}" >/dev/null; then
        echo "install-deps: installing ${need#*:} (for ${need%%:*})"
        apt_install "${need#*:}"
    fi
done

for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
