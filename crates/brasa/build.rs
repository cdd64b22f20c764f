//! The binary embeds CPython (python-policies, through brasa-script): give it an rpath to
//! libpython so it starts without LD_LIBRARY_PATH. brasa-script's build script finds the
//! library directory and passes it on to direct dependents.

fn main() {
    if let Ok(lib_dir) = std::env::var("DEP_BRASA_PYTHON_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    }
    println!("cargo:rerun-if-env-changed=DEP_BRASA_PYTHON_LIB_DIR");
}
