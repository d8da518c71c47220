//! Shapes the macro cannot know but rustc can: from the call of a user module on, a
//! declared body's shapes come from the callee's contract, which only rustc reads (also from
//! another crate). The checker then emits `const` items that compute them with the
//! runtime's compile-time rules (`flax::__private::shape`, literal sizes only) and `const _`
//! checks, spanned on the user's expression, that fail to compile with the message of a
//! mismatch.

use super::dim::{Dim, Shape};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

/// The items emitted so far, for the start of the method's body.
#[derive(Default)]
pub struct Deferred {
    pub items: Vec<TokenStream>,
    values: usize,
}

/// A dimension as the compile-time rules take it: a literal size, or `Any`.
pub fn dim(d: &Dim) -> TokenStream {
    match d.as_lit() {
        Some(n) => quote!(::flax::__private::shape::Dim::Size(#n)),
        None => quote!(::flax::__private::shape::Dim::Any),
    }
}

/// A shape the macro knows, as a compile-time value.
pub fn known(shape: &Shape) -> TokenStream {
    match shape {
        Some(dims) => {
            let dims = dims.iter().map(dim);
            quote!(::flax::__private::shape::Known::of(&[#(#dims),*]))
        }
        None => quote!(::flax::__private::shape::Known::UNKNOWN),
    }
}

/// The constant that holds value `id`.
pub fn value_name(id: usize) -> syn::Ident {
    format_ident!("__FLAX_SHAPE_{}", id)
}

impl Deferred {
    /// Emits `const __FLAX_SHAPE_k: Known = expr;` and returns `k`.
    pub fn value(&mut self, expr: TokenStream) -> usize {
        let id = self.values;
        self.values += 1;
        let name = value_name(id);
        self.items.push(quote! {
            #[allow(non_upper_case_globals, dead_code)]
            const #name: ::flax::__private::shape::Known = {
                #[allow(unused_imports)]
                use ::flax::__private::shape::Undeclared as _;
                #expr
            };
        });
        id
    }

    /// Emits a check, spanned on the user's expression: `error` (an `Option<Message>`) must be
    /// `None`.
    pub fn check(&mut self, span: Span, error: TokenStream) {
        self.items.push(quote_spanned! {span=>
            const _: () = {
                #[allow(unused_imports)]
                use ::flax::__private::shape::Undeclared as _;
                if let ::core::option::Option::Some(__flax_message) = #error {
                    ::core::panic!("{}", __flax_message.as_str())
                }
            };
        });
    }
}
