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
//!
//! With a CUDA build of libtorch and the headers `ProcessGroupNCCL.hpp` includes (CUDA's
//! runtime, with the `crt/` and CCCL headers `scripts/bootstrap.sh` installs from PyPI, and
//! NCCL's), `USE_C10D_NCCL` builds NCCL process groups too; otherwise the crate is built
//! without them and `FLAX_NCCL_UNAVAILABLE` tells the Rust side why (see [`nccl_includes`]).

use std::path::{Path, PathBuf};

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
    let nccl = nccl_includes(Path::new(&lib), cuda);
    if let Err(reason) = &nccl {
        if cuda {
            println!("cargo:warning=NCCL process groups are not built: {reason}");
        }
        println!("cargo:rustc-env=FLAX_NCCL_UNAVAILABLE={reason}");
    }
    compile_csrc(Path::new(&lib), nccl.ok());
}

/// The headers `ProcessGroupNCCL.hpp` includes beyond libtorch's, each searched for in
/// [`header_dirs`]' order: CUDA's runtime, the `crt/` headers it includes (PyPI's
/// `nvidia-cuda-crt`), CCCL's `nv/target` that `cuda_fp16.h` includes (`nvidia-cuda-cccl`), and
/// NCCL's.
const NCCL_HEADERS: [&str; 4] = ["cuda_runtime.h", "crt/host_config.h", "nv/target", "nccl.h"];

/// The include directories that NCCL process groups need, or why they are not built: a
/// CPU-only libtorch, a missing header, or an `nccl.h` of another version than the NCCL the torch
/// wheel pins.
///
/// The version matters for the ABI: the shim allocates `ProcessGroupNCCL` and its `Options`
/// itself (`make_intrusive`), with the sizes its own compilation of the header gives, and
/// `Options` embeds NCCL's `ncclConfig_t`, whose size varies with NCCL's version. The macros
/// `NCCLUtils.hpp` derives from `NCCL_VERSION_CODE` only guard methods, not members. With the
/// wheel's own NCCL headers the sizes are libtorch's: for torch 2.13.0+cu130 and NCCL 2.29.7,
/// 1152 and 256 bytes, which is what libtorch_cuda's own code passes to `operator new` and
/// sized `delete` for them (`objdump -d` of `c10d::ProcessGroupNCCL::shrink` and of the
/// deleting destructor `~ProcessGroupNCCL`).
fn nccl_includes(lib: &Path, cuda: bool) -> Result<Vec<PathBuf>, String> {
    if !cuda {
        return Err(format!("libtorch at {} is a CPU-only build (it has no libtorch_cuda)", lib.display()));
    }
    // The torch wheel's site-packages, where its `nvidia-*` dependencies put their headers.
    let site = std::fs::canonicalize(lib).ok().and_then(|l| l.parent()?.parent().map(Path::to_path_buf));
    let dirs = header_dirs(site.as_deref());
    for dir in &dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let mut found: Vec<PathBuf> = Vec::new();
    for header in NCCL_HEADERS {
        let dir = dirs.iter().find(|dir| dir.join(header).exists()).ok_or_else(|| {
            format!(
                "no {header} in CUDA_HOME, CUDA_PATH, the torch wheel's nvidia/*/include or \
                 /usr/local/cuda (run scripts/bootstrap.sh, which installs nvidia-cuda-crt and \
                 nvidia-cuda-cccl into the project's virtualenv)"
            )
        })?;
        if !found.contains(dir) {
            found.push(dir.clone());
        }
    }
    let nccl_h = found.iter().map(|dir| dir.join("nccl.h")).find(|path| path.exists()).expect("found above");
    if let Some(pinned) = site.as_deref().and_then(pinned_nccl) {
        let header = nccl_version(&nccl_h)?;
        if header != pinned {
            return Err(format!(
                "{} is NCCL {header}, but the torch wheel was built against NCCL {pinned} (its \
                 nvidia-nccl requirement), and ProcessGroupNCCL's layout depends on it",
                nccl_h.display()
            ));
        }
    }
    Ok(found)
}

/// Where CUDA's and NCCL's headers may be, in order: the toolkit `CUDA_HOME` or `CUDA_PATH`
/// names, the torch wheel's `nvidia/*/include` (NCCL's first: the library libtorch loads),
/// `/usr/local/cuda`; each also with its `cccl/` subdirectory, where CUDA 13 keeps CCCL.
fn header_dirs(site: Option<&Path>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(home) = std::env::var_os(var) {
            roots.push(PathBuf::from(home).join("include"));
        }
    }
    if let Some(nvidia) = site.map(|site| site.join("nvidia")) {
        roots.push(nvidia.join("nccl/include"));
        let mut wheels: Vec<PathBuf> = std::fs::read_dir(&nvidia)
            .into_iter()
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path().join("include")))
            .collect();
        wheels.sort();
        roots.extend(wheels);
    }
    roots.push(PathBuf::from("/usr/local/cuda/include"));
    roots.into_iter().flat_map(|root| [root.join("cccl"), root]).filter(|dir| dir.is_dir()).fold(
        Vec::new(),
        |mut dirs, dir| {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            dirs
        },
    )
}

/// The NCCL version the torch wheel in `site` requires (`Requires-Dist: nvidia-nccl-cu13==X`),
/// which PyTorch's release builds compile against; `None` for a libtorch not from a wheel.
fn pinned_nccl(site: &Path) -> Option<String> {
    let metadata = std::fs::read_dir(site)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("torch-") && name.ends_with(".dist-info"))
        })?
        .join("METADATA");
    let text = std::fs::read_to_string(metadata).ok()?;
    text.lines().find_map(|line| {
        let requirement = line.strip_prefix("Requires-Dist: nvidia-nccl-")?;
        let version = requirement.split_once("==")?.1;
        Some(version.split(|c: char| c == ';' || c.is_whitespace()).next()?.to_owned())
    })
}

/// `major.minor.patch` of an `nccl.h`, from its `NCCL_MAJOR`, `NCCL_MINOR` and `NCCL_PATCH`.
fn nccl_version(header: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(header).map_err(|e| format!("{}: {e}", header.display()))?;
    let part = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("#define ")?.strip_prefix(name)?.split_whitespace().next())
            .ok_or_else(|| format!("{} defines no {name}", header.display()))
    };
    Ok(format!("{}.{}.{}", part("NCCL_MAJOR ")?, part("NCCL_MINOR ")?, part("NCCL_PATCH ")?))
}

fn compile_csrc(lib: &Path, nccl: Option<Vec<PathBuf>>) {
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
    if let Some(dirs) = nccl {
        build.define("USE_C10D_NCCL", None).includes(dirs);
    }
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
