#!/usr/bin/env bash
# Finds the libclang shared library that RocksDB's bindings generator will load, by the rules of
# clang-sys (bindgen's loader, `runtime` feature) on 64-bit Linux, and prints its path. Exits 1,
# printing nothing, when clang-sys would find none.
#
# clang-sys's rules (clang-sys 1.x, build/common.rs and build/dynamic.rs):
#   - names: libclang.so, libclang-*.so, libclang.so.*, libclang-*.so.*, but never a name holding
#     "-cpp." (libclang-cpp.so.N is LLVM's C++ library, shipped without the C API bindgen needs);
#   - a match counts only if it is a readable 64-bit ELF file (a symlink is followed);
#   - if LIBCLANG_PATH is set, only that file or directory is searched;
#   - otherwise: `$LLVM_CONFIG_PATH --prefix` (default `llvm-config`) with bin/, lib/ and lib64/,
#     then each directory of LD_LIBRARY_PATH and LIBRARY_PATH, then the system directories below.
#
# LIBCLANG_SEARCH_ROOT (for tests) is prepended to the system directories, so that fixture trees
# can stand in for /usr.
set -uo pipefail
shopt -s nullglob dotglob

root="${LIBCLANG_SEARCH_ROOT:-}"

# The system directory patterns clang-sys searches on Linux, most specific first.
system_dirs=(
    "$root"/usr/local/llvm*/lib*
    "$root"/usr/local/lib*/*/*
    "$root"/usr/local/lib*/*
    "$root"/usr/local/lib*
    "$root"/usr/lib*/*/*
    "$root"/usr/lib*/*
    "$root"/usr/lib*
)

is_libclang_name() {
    case "$1" in
    *-cpp.*) return 1 ;;
    libclang.so | libclang-*.so | libclang.so.* | libclang-*.so.*) return 0 ;;
    *) return 1 ;;
    esac
}

# A 64-bit ELF file: magic 7f 'E' 'L' 'F', then class 2.
is_elf64() {
    [ -f "$1" ] && [ -r "$1" ] || return 1
    [ "$(head -c 5 -- "$1" | od -An -tx1 | tr -d ' \n')" = "7f454c4602" ]
}

is_libclang() {
    is_libclang_name "${1##*/}" && is_elf64 "$1"
}

# Prints the first libclang in directory $1 and succeeds, or fails.
search_dir() {
    local file
    [ -d "$1" ] || return 1
    for file in "$1"/*; do
        if is_libclang "$file"; then
            printf '%s\n' "$file"
            return 0
        fi
    done
    return 1
}

# Each directory of a colon-separated list.
search_path_list() {
    local dir
    local -a dirs
    IFS=: read -r -a dirs <<<"$1"
    for dir in "${dirs[@]}"; do
        [ -n "$dir" ] && search_dir "$dir" && return 0
    done
    return 1
}

if [ -n "${LIBCLANG_PATH+set}" ]; then
    if [ -f "$LIBCLANG_PATH" ] && is_libclang "$LIBCLANG_PATH"; then
        printf '%s\n' "$LIBCLANG_PATH"
        exit 0
    fi
    search_dir "$LIBCLANG_PATH" && exit 0
    exit 1
fi

if prefix=$("${LLVM_CONFIG_PATH:-llvm-config}" --prefix 2>/dev/null) && [ -n "$prefix" ]; then
    prefix=${prefix%%$'\n'*}
    for sub in bin lib lib64; do
        search_dir "$prefix/$sub" && exit 0
    done
fi

search_path_list "${LD_LIBRARY_PATH:-}" && exit 0
search_path_list "${LIBRARY_PATH:-}" && exit 0

for dir in "${system_dirs[@]}"; do
    search_dir "$dir" && exit 0
done
exit 1
