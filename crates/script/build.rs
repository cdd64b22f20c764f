//! Makes this crate's own test and bench binaries find `libpython3.x.so` at run time without
//! `LD_LIBRARY_PATH`, and passes the library directory on to dependents.

fn main() {
    let config = pyo3_build_config::get();
    if let Some(lib_dir) = config.lib_dir() {
        // Only applies to this package's tests, benches and examples: Cargo never forwards
        // `rustc-link-arg` to dependents, hence the `lib_dir` metadata below for their build.rs.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        println!("cargo:lib_dir={lib_dir}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
