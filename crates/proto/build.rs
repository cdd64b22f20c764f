//! Compiles every `.proto` file below `proto/` with protox (a pure-Rust protobuf compiler), so no
//! system `protoc` is needed. Each file must declare its own `package`; prost's include file then
//! nests the generated code as modules named after the packages (see `src/lib.rs`).

use std::path::{Path, PathBuf};

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    collect_protos(&root, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Ok(());
    }
    let descriptors = protox::compile(&files, [&root])?;
    // Services only with the `grpc` feature: without it the crate is plain prost messages.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_client(grpc)
        .build_server(grpc)
        .include_file("_includes.rs")
        .compile_fds(descriptors)?;
    Ok(())
}
