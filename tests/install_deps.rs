//! `scripts/find-libclang.sh`, which decides whether `scripts/install-deps.sh` must install
//! libclang, checked against fixture trees standing in for `/usr`. A wrong "present" answer makes
//! the first build on a fresh machine fail inside RocksDB's build script, where no test of ours
//! runs, so the detection is tested here on the layouts that fooled it before.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/find-libclang.sh");

/// The start of a 64-bit (class 2) or 32-bit (class 1) little-endian ELF file.
fn elf(class: u8) -> Vec<u8> {
    let mut bytes = vec![0x7f, b'E', b'L', b'F', class, 1, 1, 0];
    bytes.resize(64, 0);
    bytes
}

struct Fixture {
    root: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { root: tempfile::tempdir().unwrap() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn file(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn link(&self, rel: &str, target: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    /// The base image's layout: LLVM 14's C++ library only, which bindgen cannot load.
    fn base_image(&self) {
        self.file("usr/lib/llvm-14/lib/libclang-cpp.so.14", &elf(2));
        self.link(
            "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
            "../llvm-14/lib/libclang-cpp.so.14",
        );
        self.file("usr/lib/llvm-14/lib/libLLVM-14.so.1", &elf(2));
    }

    /// Runs the script with the fixture as the system root and nothing else to search (the
    /// machine's own llvm-config and library paths are hidden); `env` adds variables.
    fn find(&self, env: &[(&str, &Path)]) -> Option<PathBuf> {
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT)
            .env("LIBCLANG_SEARCH_ROOT", self.root.path())
            .env("LLVM_CONFIG_PATH", self.path("no-llvm-config"))
            .env_remove("LIBCLANG_PATH")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("LIBRARY_PATH");
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = cmd.output().expect("run find-libclang.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.code() {
            Some(0) => Some(PathBuf::from(stdout.trim_end())),
            Some(1) => {
                assert!(stdout.is_empty(), "prints nothing when missing: {stdout}");
                None
            }
            other => panic!("find-libclang.sh exited with {other:?}: {out:?}"),
        }
    }
}

#[test]
fn empty_root_has_no_libclang() {
    assert_eq!(Fixture::new().find(&[]), None);
}

#[test]
fn libclang_cpp_alone_counts_as_missing() {
    let fx = Fixture::new();
    fx.base_image();
    assert_eq!(fx.find(&[]), None);
}

#[test]
fn debian_libclang1_is_found() {
    let fx = Fixture::new();
    fx.base_image();
    let lib = fx.file("usr/lib/llvm-14/lib/libclang.so.1", &elf(2));
    fx.link("usr/lib/x86_64-linux-gnu/libclang-14.so.1", "../llvm-14/lib/libclang.so.1");
    let found = fx.find(&[]).expect("libclang.so.1 is loadable");
    assert_eq!(std::fs::canonicalize(found).unwrap(), lib);
}

#[test]
fn every_name_clang_sys_accepts_is_found() {
    for name in ["libclang.so", "libclang-14.so", "libclang.so.13", "libclang-14.0.6.so"] {
        let fx = Fixture::new();
        fx.base_image();
        let lib = fx.file(&format!("usr/lib/llvm-14/lib/{name}"), &elf(2));
        assert_eq!(fx.find(&[]), Some(lib), "{name}");
    }
}

#[test]
fn names_and_files_clang_sys_rejects_are_missing() {
    let rejected: [(&str, Vec<u8>); 6] = [
        ("libclang-cpp.so", elf(2)),
        ("libclangBasic.a", elf(2)),
        ("libclang.a", elf(2)),
        ("libclang.so", elf(1)),
        ("libclang.so", b"INPUT ( libclang.so.1 )\n".to_vec()),
        ("libclang.so", Vec::new()),
    ];
    for (name, contents) in rejected {
        let fx = Fixture::new();
        fx.file(&format!("usr/lib/llvm-14/lib/{name}"), &contents);
        assert_eq!(fx.find(&[]), None, "{name} with {} bytes", contents.len());
    }
}

#[test]
fn dangling_symlink_is_missing() {
    let fx = Fixture::new();
    fx.link("usr/lib/x86_64-linux-gnu/libclang-14.so.1", "../llvm-14/lib/libclang.so.1");
    assert_eq!(fx.find(&[]), None);
}

#[test]
fn every_system_directory_pattern_is_searched() {
    for dir in [
        "usr/local/llvm-17/lib64",
        "usr/local/lib/x86_64-linux-gnu/llvm",
        "usr/local/lib64/x",
        "usr/local/lib",
        "usr/lib64/llvm-18/lib",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib",
    ] {
        let fx = Fixture::new();
        let lib = fx.file(&format!("{dir}/libclang.so"), &elf(2));
        assert_eq!(fx.find(&[]), Some(lib), "{dir}");
    }
    // Deeper than the patterns reach: clang-sys does not look there.
    let fx = Fixture::new();
    fx.file("usr/lib/a/b/c/libclang.so", &elf(2));
    assert_eq!(fx.find(&[]), None);
}

#[test]
fn libclang_path_is_searched_alone() {
    let fx = Fixture::new();
    fx.file("usr/lib/llvm-14/lib/libclang.so.1", &elf(2));
    let empty = fx.path("opt/empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(fx.find(&[("LIBCLANG_PATH", &empty)]), None);

    let lib = fx.file("opt/llvm/lib/libclang-15.so", &elf(2));
    assert_eq!(fx.find(&[("LIBCLANG_PATH", &fx.path("opt/llvm/lib"))]), Some(lib.clone()));
    assert_eq!(fx.find(&[("LIBCLANG_PATH", &lib)]), Some(lib));
    let cpp = fx.file("opt/cpp/libclang-cpp.so.15", &elf(2));
    assert_eq!(fx.find(&[("LIBCLANG_PATH", &cpp)]), None);
}

#[test]
fn library_path_variables_are_searched() {
    for var in ["LD_LIBRARY_PATH", "LIBRARY_PATH"] {
        let fx = Fixture::new();
        fx.base_image();
        let lib = fx.file("opt/llvm/lib/libclang.so", &elf(2));
        let list =
            format!("{}:{}", fx.path("nowhere").display(), fx.path("opt/llvm/lib").display());
        assert_eq!(fx.find(&[(var, Path::new(&list))]), Some(lib), "{var}");
    }
}

#[test]
fn llvm_config_prefix_is_searched() {
    let fx = Fixture::new();
    fx.base_image();
    let lib = fx.file("opt/llvm-16/lib/libclang.so.16", &elf(2));
    let config = fx.file(
        "bin/llvm-config",
        format!("#!/bin/sh\necho {}\n", fx.path("opt/llvm-16").display()).as_bytes(),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Overrides the variable `find` sets to hide the machine's own llvm-config.
    assert_eq!(fx.find(&[("LLVM_CONFIG_PATH", &config)]), Some(lib));
}
