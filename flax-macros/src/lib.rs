//! Procedural macros for `flax-runtime`.

use proc_macro::TokenStream;

mod tree;

/// Implements `flax::Tree` for a struct; see `flax::tree` for the attributes.
#[proc_macro_derive(Tree, attributes(tree))]
pub fn derive_tree(input: TokenStream) -> TokenStream {
    tree::derive(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}
