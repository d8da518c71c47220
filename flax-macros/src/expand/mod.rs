//! Code generation from the IR (`crate::ast`), after the checks, split by concern: the
//! struct's constructor, builder setters, `Clone`, `Debug` and `Module` impl
//! (`module_struct`); the impl block's module methods and `init`/`apply` (`module_impl`);
//! the typed params views (`crate::params`), the `setup` support (`crate::setup`), the
//! `CallArgs` impl (`crate::call_args`), the shape contracts and guards
//! (`crate::shape::expand`) and the declared methods' tables of shapes (`shape_doc`).
//!
//! Each entry point is serde_derive's pipeline: parse into the IR, check, expand, with one
//! `Ctxt` collecting the errors of all three. The expansion is emitted even when a check
//! failed, so one mistake gives one error.

mod module_impl;
mod module_struct;
mod shape_doc;

use crate::ast::{ModuleImpl, ModuleStruct};
use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;
use quote::quote;

/// `#[module]` on a struct.
pub fn module_struct(attr: TokenStream, item: syn::ItemStruct) -> TokenStream {
    let cx = Ctxt::new();
    let Some(ir) = ModuleStruct::from_syn(&cx, &attr, item.clone()) else {
        return cx.emit(quote!(#item));
    };
    crate::check::module_struct(&cx, &ir);
    cx.emit(module_struct::generate(&ir))
}

/// `#[module]` on an impl block.
pub fn module_impl(attr: TokenStream, item: syn::ItemImpl) -> TokenStream {
    let cx = Ctxt::new();
    let Some(ir) = ModuleImpl::from_syn(&cx, &attr, item.clone()) else {
        return cx.emit(quote!(#item));
    };
    let analysis = crate::check::module_impl(&cx, &ir);
    cx.emit(module_impl::generate(&ir, &analysis))
}
