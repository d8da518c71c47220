//! Embeds libtorch's library directory as an rpath, so that this crate's tests, benches and
//! examples run without `LD_LIBRARY_PATH`, and, with a CUDA build of libtorch, keeps
//! `libtorch_cuda` linked although no symbol of it is referenced: libtorch registers its CUDA
//! kernels when that library loads, and the linker's default `--as-needed` drops it, leaving
//! `Cuda::is_available()` false on a GPU machine (tch-rs issue 980). Dependent packages'
//! build scripts do the same from the metadata exported here: `DEP_FLAX_LIBTORCH_LIB` (the
//! directory) and `DEP_FLAX_TORCH_CUDA` (`1` for a CUDA build), as `examples/build.rs` does.
//!
//! Also compiles every `csrc/*.cpp` (the thin shim: the libtorch operators tch's generated API
//! leaves out, functorch's vmap levels, custom autograd functions, forward-mode AD, c10d's
//! process groups), against the headers of the libtorch that torch-sys found, with
//! torch-sys's flags (C++17 and its choice of the C++11 ABI), as torch-sys builds its own
//! wrapper. `USE_C10D_GLOO` makes c10d's `ProcessGroupGloo.hpp` declare its class, and
//! `csrc/third_party/gloo` holds the few Gloo headers it includes, which the PyPI wheel
//! leaves out.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    // torch-sys reports the directory on Linux and macOS; elsewhere it is `$LIBTORCH/lib`.
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .or_else(|_| std::env::var("LIBTORCH").map(|root| format!("{root}/lib")))
        .expect("torch-sys found libtorch, but reported neither DEP_TCH_LIBTORCH_LIB nor LIBTORCH");
    let cuda = Path::new(&lib).join("libtorch_cuda.so").exists();
    if std::env::var("CARGO_CFG_TARGET_FAMILY").as_deref() == Ok("unix") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        if cuda {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
    println!("cargo:libtorch_lib={lib}");
    println!("cargo:torch_cuda={}", u8::from(cuda));
    compile_csrc(Path::new(&lib));
}

fn compile_csrc(lib: &Path) {
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let mut sources: Vec<_> = std::fs::read_dir("csrc")
        .expect("flax-runtime's csrc/ directory is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "cpp"))
        .collect();
    sources.sort();
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
    }
    let include = lib.parent().expect("libtorch's lib directory has a parent").join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files(&sources)
        .include("csrc")
        .include("csrc/compat")
        .include("csrc/third_party/gloo")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("USE_C10D_GLOO", None)
        .warnings(false);
    if build.get_compiler().is_like_msvc() {
        build.flag("/std:c++17");
    } else {
        build
            .flag("-std=c++17")
            .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
            .flag("-DGLOG_USE_GLOG_EXPORT");
    }
    build.compile("flax_csrc");
}
