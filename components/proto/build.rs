//! Generates Rust code for `proto/*.proto` with the pure-Rust protobuf 2 code generator, so the
//! build needs no `protoc` binary. `eraftpb` is not generated here: it is reused from
//! `raft-proto`, and `proto/include/eraftpb.proto` only declares its message names.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &["metapb", "raft_serverpb", "raft_cmdpb", "errorpb", "kvrpcpb", "pdpb"];

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let inputs: Vec<String> = PROTOS.iter().map(|p| format!("proto/{p}.proto")).collect();
    println!("cargo:rerun-if-changed=proto");

    protobuf_codegen_pure::Codegen::new()
        .out_dir(&out_dir)
        .inputs(&inputs)
        .include("proto")
        .include("proto/include")
        .run()
        .expect("protobuf code generation failed");

    // The generated files start with inner attributes and `//!` docs, which `include!` inside
    // a `mod` block does not accept; lib.rs declares the allows itself.
    for p in PROTOS {
        let path = out_dir.join(format!("{p}.rs"));
        let text = fs::read_to_string(&path).expect("generated file");
        let kept: Vec<&str> =
            text.lines().filter(|l| !l.starts_with("#![") && !l.starts_with("//!")).collect();
        fs::write(&path, kept.join("\n")).expect("rewrite generated file");
    }
}
