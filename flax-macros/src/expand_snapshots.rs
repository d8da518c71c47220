//! Expansion snapshots: representative inputs of each macro, expanded by the crate's own
//! expand functions and pretty-printed (`prettyplease`), compared with the files under
//! `tests/expand/`. A change of the generated code shows up as a reviewable diff of those
//! files; `FLAX_EXPAND=overwrite cargo test -p flax-macros` rewrites them.

use proc_macro2::TokenStream;
use std::path::PathBuf;

/// Compares the pretty-printed `tokens` with `tests/expand/{name}.expanded.rs`, or rewrites
/// that file when `FLAX_EXPAND=overwrite`.
fn assert_expansion(name: &str, tokens: TokenStream) {
    let file: syn::File =
        syn::parse2(tokens).unwrap_or_else(|e| panic!("{name}: the expansion does not parse: {e}"));
    let pretty = prettyplease::unparse(&file);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expand").join(format!("{name}.expanded.rs"));
    if std::env::var("FLAX_EXPAND").as_deref() == Ok("overwrite") {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create tests/expand");
        std::fs::write(&path, &pretty).expect("write the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; `FLAX_EXPAND=overwrite cargo test -p flax-macros` writes it", path.display())
    });
    if expected != pretty {
        let first = expected.lines().zip(pretty.lines()).position(|(a, b)| a != b);
        let line = first.unwrap_or_else(|| expected.lines().count().min(pretty.lines().count()));
        panic!(
            "{name}: the expansion differs from {} from line {} on (review, then rewrite with \
             FLAX_EXPAND=overwrite):\n--- snapshot\n{}\n--- now\n{}",
            path.display(),
            line + 1,
            expected.lines().skip(line).take(8).collect::<Vec<_>>().join("\n"),
            pretty.lines().skip(line).take(8).collect::<Vec<_>>().join("\n"),
        );
    }
}

/// `#[module]` on a struct: a required field, a default, a submodule field.
#[test]
fn module_struct() {
    let item = syn::parse_quote! {
        pub struct Block {
            features: i64,
            #[module(default = 0.1)]
            dropout_rate: f64,
            #[submodule]
            norm: nn::LayerNorm,
        }
    };
    assert_expansion("module_struct", crate::expand::module_struct(TokenStream::new(), item));
}

/// `#[module]` on an impl block with a compact method.
#[test]
fn module_impl_compact() {
    let item = syn::parse_quote! {
        impl Mlp {
            #[compact]
            pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let x = nn::Dense::new(self.features).call(cx, x)?.relu();
                nn::Dense::new(1).call(cx, &x)
            }
        }
    };
    assert_expansion("module_impl_compact", crate::expand::module_impl(TokenStream::new(), item));
}

/// A `setup`-style module: the struct's `#[setup]` field and the impl block's `fn setup`.
#[test]
fn setup_module() {
    let strukt = syn::parse_quote! {
        pub struct Head {
            features: i64,
            #[setup]
            dense: nn::Dense,
        }
    };
    let imp = syn::parse_quote! {
        impl Head {
            fn setup(&self) -> HeadSetup {
                HeadSetup { dense: nn::Dense::new(self.features) }
            }

            pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                self.dense.call(cx, x)
            }
        }
    };
    let mut tokens = crate::expand::module_struct(TokenStream::new(), strukt);
    tokens.extend(crate::expand::module_impl(TokenStream::new(), imp));
    assert_expansion("setup_module", tokens);
}

/// A `#[shape]`-declared compact method calling a declared child (the contract constant,
/// the run-time guard and the `const` check of the child's call).
#[test]
fn shape_declared() {
    let item = syn::parse_quote! {
        impl Classifier {
            #[compact]
            #[shape(x: [B, 784] -> [B, self.classes])]
            pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let x = nn::Dense::new(64).call(cx, x)?.relu();
                let x = Head::new(self.classes).call(cx, &x)?;
                Ok(x)
            }
        }
    };
    assert_expansion("shape_declared", crate::expand::module_impl(TokenStream::new(), item));
}

/// `#[derive(Tree)]`: a tree field, a renamed one and a static one.
#[test]
fn derive_tree() {
    let input = syn::parse_quote! {
        struct TrainState {
            params: Variables,
            #[tree(rename = "opt_state")]
            optimizer_state: OptState,
            #[tree(static)]
            learning_rate: f64,
        }
    };
    assert_expansion("derive_tree", crate::tree::derive(input));
}
