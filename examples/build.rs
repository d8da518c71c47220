//! The link arguments of flax-runtime's build script, for this package's example binaries:
//! libtorch's directory as an rpath, and `libtorch_cuda` kept linked with a CUDA build of
//! libtorch (see flax-runtime/build.rs).
fn main() {
    if let Ok(lib) = std::env::var("DEP_FLAX_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var("DEP_FLAX_TORCH_CUDA").as_deref() == Ok("1") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
