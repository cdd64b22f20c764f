//! Test binaries of this crate embed CPython through brasa-script: give them an rpath to
//! libpython so they start without LD_LIBRARY_PATH (brasa-script passes the directory on).

fn main() {
    if let Ok(lib_dir) = std::env::var("DEP_BRASA_PYTHON_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_BRASA_PYTHON_LIB_DIR");
}
