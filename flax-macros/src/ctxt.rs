//! The error collector of one expansion (serde_derive's `internals::ctxt`).
//!
//! Parsing and every check push their errors here instead of returning at the first, so one
//! expansion reports all of its mistakes together, each at the user's span. `check` at the
//! end combines them; the expansion is emitted after them either way (one error per mistake,
//! not a second one at every use of what the mistake would have removed).

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use std::cell::RefCell;
use std::fmt::Display;

/// Collects the errors of one expansion; `check` (or `emit`) must be called before it drops.
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt { errors: RefCell::new(Some(Vec::new())) }
    }

    /// An error spanned on the syntax node `node`.
    pub fn error_spanned_by<T: ToTokens, M: Display>(&self, node: T, message: M) {
        self.syn_error(syn::Error::new_spanned(node.into_token_stream(), message));
    }

    /// An error at `span`.
    pub fn error_at<M: Display>(&self, span: proc_macro2::Span, message: M) {
        self.syn_error(syn::Error::new(span, message));
    }

    /// An error built elsewhere (a parser's, darling's).
    pub fn syn_error(&self, error: syn::Error) {
        self.errors.borrow_mut().as_mut().expect("the Ctxt was already checked").push(error);
    }

    /// Every error pushed so far, combined (`Ok` when there were none).
    pub fn check(self) -> syn::Result<()> {
        let errors = self.errors.borrow_mut().take().expect("the Ctxt was already checked");
        let mut errors = errors.into_iter();
        let Some(mut combined) = errors.next() else { return Ok(()) };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }

    /// The errors (if any) followed by `expansion`, which is emitted either way so that code
    /// using the items it defines sees no second error.
    pub fn emit(self, expansion: TokenStream) -> TokenStream {
        let errors = self.check().err().map(|e| e.to_compile_error());
        quote! { #errors #expansion }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("a Ctxt was dropped without checking its errors");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_reported_together_before_the_expansion() {
        let cx = Ctxt::new();
        cx.error_at(proc_macro2::Span::call_site(), "first");
        cx.error_spanned_by(quote!(x), "second");
        let emitted = cx
            .emit(quote!(
                struct Kept;
            ))
            .to_string();
        let (first, second, kept) =
            (emitted.find("first"), emitted.find("second"), emitted.find("struct Kept"));
        assert!(first < second && second < kept && first.is_some(), "{emitted}");
    }

    #[test]
    fn no_error_is_ok() {
        assert!(Ctxt::new().check().is_ok());
    }
}
