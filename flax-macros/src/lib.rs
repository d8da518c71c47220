//! Procedural macros of `flax-runtime` (re-exported as `flax::module`, `flax::compact`).
//!
//! `#[module]` on a struct generates the constructor, builder setters, `Clone`, Flax's
//! `Debug` form and the `Module` impl; on an `impl` block it turns every method taking a
//! `&mut Scope` into a module method (entering the module's scope when called from a parent)
//! and generates `init`/`apply` with the argument types of the compact method. Errors Flax
//! raises at run time are raised here at compile time where the syntax proves them.
//!
//! `#[derive(Tree)]` implements `flax::Tree` (pytrees) for a struct.
//!
//! Layout (serde_derive's: parse → IR → check → expand):
//! - `ast`: the one parsed representation of a module struct (fields with their options) or
//!   impl block (module methods classified once: compact or not, the scope, the `Result`'s
//!   type, the `#[shape]` declaration), keeping the user's syntax for spans;
//! - `walk`: the one walk of a method body, run by `check`: literal names, declarations and
//!   the params and submodules with their Flax auto-names, read by the typed params view and
//!   the checks; for a declared method it drives the shape pass statement by statement;
//! - `ctxt`: the error collector of one expansion (errors of parsing and of every check are
//!   reported together, each at the user's span);
//! - `check`: the checks over the IR (Flax's runtime errors the syntax proves, and the
//!   shape pass of `shape` for `#[shape(…)]` methods);
//! - `expand`: code generation from the IR, emitted even when a check failed (the items
//!   callers use stay, so one mistake is one error); with `params` (typed params views),
//!   `setup` (`setup`-style modules), `call_args` (the `nn::CallArgs` impl that lets a
//!   `Sequential` call a module) and `shape::expand`;
//! - `body`, `tokens`: syntax and token helpers the passes share; `tree` and `collection` are
//!   the derives.
//!
//! Nothing here panics on user input.

mod ast;
mod body;
mod call_args;
mod check;
mod collection;
mod ctxt;
mod expand;
#[cfg(test)]
mod expand_snapshots;
mod params;
mod setup;
mod shape;
mod tokens;
mod tree;
mod walk;

use proc_macro::TokenStream;

/// Makes a struct a Flax module, or makes the methods of an `impl` block module methods.
/// See the `flax` crate docs for the generated API.
#[proc_macro_attribute]
pub fn module(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let attr = proc_macro2::TokenStream::from(attr);
    let expanded = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Struct(s)) => expand::module_struct(attr, s),
        Ok(syn::Item::Impl(i)) => expand::module_impl(attr, i),
        Ok(other) => {
            let err =
                syn::Error::new_spanned(other, "#[module] applies to a struct or to an impl block of one");
            let mut out = err.to_compile_error();
            out.extend(item);
            out
        }
        Err(err) => err.to_compile_error(),
    };
    expanded.into()
}

/// Marks the one method of a `#[module]` impl block whose body declares submodules and
/// params inline (Flax's `@nn.compact`). Only valid inside a `#[module]` impl block, which
/// consumes it; reaching this macro means it was used elsewhere.
#[proc_macro_attribute]
pub fn compact(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let mut out = syn::Error::new(
        proc_macro2::Span::call_site(),
        "#[compact] is only valid on a method of an impl block marked #[module]",
    )
    .to_compile_error();
    out.extend(item);
    out.into()
}

/// Declares the tensor shapes of a module method, checked at compile time through its body
/// and at run time at each call:
///
/// ```ignore
/// #[module]
/// impl Cnn {
///     #[compact]
///     #[shape(x: [B, 28, 28, 1] -> [B, 10])]
///     pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> { /* … */ }
/// }
/// ```
///
/// Inputs are `name: [dims]` for tensor arguments (`&Tensor`/`Tensor`), comma-separated;
/// `-> [dims]` declares a tensor output (leave it out for other outputs). A dimension is an
/// integer, a symbol (`B`: one size wherever it appears in the declaration), an integer field
/// of the module (`self.features`) or `_` (any size).
///
/// At compile time `#[module]` follows the body statement by statement (the library's layers
/// through `nn::…` paths, tensor methods, broadcasting operators, `Tensor::cat`; see the
/// README's "Compile-time shapes") and reports only errors that hold for every size of the
/// symbols and fields, each at the expression at fault with both shapes: the declared output
/// differs, a layer gets the wrong rank, a `reshape` cannot keep the element count, a binary
/// op or concatenation mixes incompatible shapes, a `VALID` window is larger than its input,
/// or a declared module is called with an input its own declaration rejects (checked by
/// rustc through the callee's generated `__FLAX_SHAPE` constant, so also across crates).
/// Code it cannot follow (branches, loops, closures, unknown calls) gives unknown shapes,
/// from which nothing is concluded.
///
/// At run time each call checks its tensors (and a declared output) against the declaration,
/// the symbols taking the sizes they first meet, and returns `flax::Error::DeclaredShape`
/// naming the module path, the argument and the dimension. Undeclared methods get no check.
///
/// Only valid on a method of a `#[module]` impl block, which consumes it; reaching this macro
/// means it was used elsewhere.
#[proc_macro_attribute]
pub fn shape(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let mut out = syn::Error::new(
        proc_macro2::Span::call_site(),
        "#[shape] is only valid on a method of an impl block marked #[module]",
    )
    .to_compile_error();
    out.extend(item);
    out.into()
}

/// Implements `flax::Tree` for a struct; see `flax::tree` for the attributes.
#[proc_macro_derive(Tree, attributes(tree))]
pub fn derive_tree(input: TokenStream) -> TokenStream {
    tree::derive(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}

/// `#[derive(Collection)]`: clu's `metrics.Collection` for a struct whose named fields are
/// metrics (see `flax::training::metrics`).
#[proc_macro_derive(Collection)]
pub fn derive_collection(input: TokenStream) -> TokenStream {
    collection::derive(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}
