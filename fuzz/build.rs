//! Same rpath as flax-runtime's build script, for the fuzz target binaries.
fn main() {
    if let Ok(lib) = std::env::var("DEP_FLAX_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
