//! Embeds libtorch's library directory as an rpath, so that this crate's tests, benches and
//! examples run without `LD_LIBRARY_PATH`, and re-exports it (`DEP_FLAX_LIBTORCH_LIB`) for
//! dependent packages' build scripts to do the same.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("unix") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        }
        println!("cargo:libtorch_lib={lib}");
    }
}
