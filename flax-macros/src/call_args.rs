//! `flax::nn::CallArgs` for a module's `call`, so that a `Sequential` can pass it Flax's
//! positional and keyword arguments.
//!
//! Generated only when the signature shows how: every parameter after the scope is a tensor
//! (`&Tensor`, `Tensor`) or a flag (`bool`, `i64`, `f64`), or an `Option` of one (which may be
//! left out), and the output is a `Tensor`, a tuple of them, a `Value` or a `FrozenDict`. The
//! check is syntactic (by the last path segment of each type), as the rest of the macro's.

use crate::ast::Method;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// How a parameter's argument is bound.
enum Binding<'a> {
    /// Must be given; converted to the parameter's type.
    Required(&'a syn::Type),
    /// May be left out; converted to the `Option`'s element type.
    Optional(&'a syn::Type),
}

/// The `impl flax::nn::CallArgs` for the module method `call`, or nothing when its signature
/// does not qualify.
pub fn generate(item: &syn::ItemImpl, call: &Method) -> Option<TokenStream> {
    if !is_output(&call.output) {
        return None;
    }
    let (typed, scope_index) = (call.typed_args(), call.scope_index);
    let mut names = Vec::new();
    let mut bindings = Vec::new();
    for (i, arg) in typed.iter().enumerate() {
        if i == scope_index {
            continue;
        }
        bindings.push(binding(&arg.ty)?);
        names.push(match &*arg.pat {
            syn::Pat::Ident(p) => p.ident.to_string(),
            _ => format!("arg{i}"),
        });
    }
    let count = names.len();
    let locals: Vec<syn::Ident> = (0..count).map(|i| format_ident!("__flax_a{}", i)).collect();
    let lets = bindings.iter().zip(&locals).enumerate().map(|(i, (b, local))| {
        let (function, ty) = match b {
            Binding::Required(ty) => (quote!(required), ty),
            Binding::Optional(ty) => (quote!(optional), ty),
        };
        quote! {
            let #local = ::flax::nn::Args::#function::<#ty>(__flax_slots[#i], __flax_cx, __flax_callee, __FLAX_NAMES[#i])?;
        }
    });
    let mut pass = Vec::new();
    let mut next = locals.iter();
    for i in 0..typed.len() {
        if i == scope_index {
            pass.push(quote!(__flax_cx));
        } else if let Some(local) = next.next() {
            pass.push(quote!(#local));
        }
    }
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    Some(quote! {
        impl #impl_generics ::flax::nn::CallArgs for #self_ty #where_clause {
            fn call_args(&self, __flax_cx: &mut ::flax::Scope<'_>, __flax_args: ::flax::nn::Args) -> ::flax::Result<::flax::Value> {
                const __FLAX_NAMES: [&str; #count] = [#(#names),*];
                let __flax_callee = <Self as ::flax::Module>::TYPE_NAME;
                let __flax_slots = __flax_args.bind(__flax_cx, __flax_callee, &__FLAX_NAMES)?;
                #(#lets)*
                let __flax_out = self.call(#(#pass),*)?;
                ::flax::Result::Ok(::flax::nn::LayerOutput::into_value(__flax_out))
            }
        }
    })
}

/// The last segment of a plain type path (`Tensor` for `tch::Tensor`).
fn last_segment(ty: &syn::Type) -> Option<&syn::PathSegment> {
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn is_named(ty: &syn::Type, names: &[&str]) -> bool {
    last_segment(ty).is_some_and(|s| s.arguments.is_none() && names.iter().any(|n| s.ident == n))
}

/// `&Tensor`, `Tensor`, `bool`, `i64`, `f64`.
fn is_argument(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Reference(r) => r.mutability.is_none() && is_named(&r.elem, &["Tensor"]),
        _ => is_named(ty, &["Tensor", "bool", "i64", "f64"]),
    }
}

fn binding(ty: &syn::Type) -> Option<Binding<'_>> {
    if is_argument(ty) {
        return Some(Binding::Required(ty));
    }
    let segment = last_segment(ty)?;
    if segment.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &segment.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(inner) if args.args.len() == 1 && is_argument(inner) => {
            Some(Binding::Optional(inner))
        }
        _ => None,
    }
}

/// `Tensor`, a tuple of `Tensor`s, `Value`, `FrozenDict`.
fn is_output(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Tuple(t) => !t.elems.is_empty() && t.elems.iter().all(|e| is_named(e, &["Tensor"])),
        _ => is_named(ty, &["Tensor", "Value", "FrozenDict"]),
    }
}
