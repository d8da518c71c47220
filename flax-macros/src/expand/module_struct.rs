//! The expansion of a `#[module]` struct: constructor, setters, `Clone`, Flax's `Debug`,
//! `Module` impl.

use crate::ast::{Field, ModuleStruct};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

/// The struct with its hidden handle, the constructor and setters, `Clone`, `Debug`,
/// `Module`, the `#[submodule]` fields' params view and the `setup` support.
///
/// The handle's field is named for the constructor: a struct literal, a newcomer's first try,
/// fails with rustc's "missing field `__construct_with_new` in initializer of `Mlp`", which says
/// what to write instead (`Mlp::new`). (Snake case: a name with the type's in it would trip
/// `non_snake_case` on every module, and that lint cannot be allowed on the field alone.)
pub fn generate(ir: &ModuleStruct) -> TokenStream {
    let (item, fields, setup_fields) = (&ir.item, &ir.fields[..], &ir.setup_fields[..]);
    let ident = &item.ident;
    let type_name = ident.to_string();
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    let handle = format_ident!("__construct_with_new");
    let mut strukt = item.clone();
    if let syn::Fields::Named(named) = &mut strukt.fields {
        named.named.push(syn::parse_quote! {
            #[doc(hidden)]
            pub #handle: ::flax::__private::ModuleHandle
        });
    }
    let required: Vec<&Field> = fields.iter().filter(|f| f.default.is_none()).collect();
    let params = required.iter().map(|f| {
        let id = &f.ident;
        let ty = argument_type(f, &item.generics);
        quote! { #id: #ty }
    });
    let conversions = required.iter().map(|f| {
        let id = &f.ident;
        converts(f, &item.generics).then(|| quote! { let #id = #id.into(); })
    });
    let inits = fields.iter().map(|f| {
        let id = &f.ident;
        match &f.default {
            None => quote! { #id },
            Some(expr) => quote_spanned! {expr.span()=> #id: #expr },
        }
    });
    let naming = fields.iter().filter(|f| f.submodule).map(|f| {
        let id = &f.ident;
        let name = id.to_string();
        quote! { ::flax::__private::SubmoduleField::name_field(&mut this.#id, #name); }
    });
    let setters = fields.iter().filter(|f| f.default.is_some()).map(|f| setter(&item.vis, f, &item.generics));
    let new_doc = format!(
        "Creates a `{type_name}` from its required attributes; the others take their defaults \
         and have builder setters."
    );
    let debug_fields = fields.iter().map(|f| {
        let id = &f.ident;
        let name = id.to_string();
        quote! { (#name, (&&::flax::__private::Probe(&self.#id)).__flax_repr()) }
    });
    let clone_fields = fields.iter().map(|f| {
        let id = &f.ident;
        quote! { #id: ::core::clone::Clone::clone(&self.#id) }
    });
    let vis = &item.vis;
    let submodules: Vec<crate::params::SubmoduleField<'_>> = fields
        .iter()
        .filter(|f| f.submodule)
        .chain(setup_fields)
        .map(|f| crate::params::SubmoduleField { ident: &f.ident, ty: &f.ty })
        .collect();
    let field_params =
        item.generics.params.is_empty().then(|| crate::params::generate_fields(ident, &submodules));
    let field_contracts = if item.generics.params.is_empty() {
        let typed: Vec<_> = submodules.iter().map(|f| (f.ident, f.ty)).collect();
        crate::shape::expand::field_contracts(&typed)
    } else {
        None
    };
    let setup = (!setup_fields.is_empty())
        .then(|| crate::setup::generate_struct(ident, vis, &item.generics, setup_fields));
    quote! {
        #strukt

        #field_params

        #setup

        impl #impl_generics #ident #ty_generics #where_clause {
            #[doc = #new_doc]
            #[allow(clippy::new_without_default, clippy::too_many_arguments)]
            #vis fn new(#(#params),*) -> Self {
                #(#conversions)*
                #[allow(unused_mut)]
                let mut this = Self {
                    #(#inits,)*
                    #handle: ::flax::__private::ModuleHandle::new(#type_name),
                };
                #(#naming)*
                this
            }

            /// Gives the module an explicit name in its parent (Flax's `name=`), instead of
            /// the auto-name `Type_N`.
            #vis fn name(mut self, name: impl ::core::convert::Into<::std::borrow::Cow<'static, str>>) -> Self {
                self.#handle.set_name(name.into());
                self
            }

            #(#setters)*

            #field_contracts
        }

        impl #impl_generics ::core::clone::Clone for #ident #ty_generics #where_clause {
            fn clone(&self) -> Self {
                Self { #(#clone_fields,)* #handle: ::core::clone::Clone::clone(&self.#handle) }
            }
        }

        impl #impl_generics ::core::fmt::Debug for #ident #ty_generics #where_clause {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                #[allow(unused_imports)]
                use ::flax::__private::{ViaDebug as _, ViaFlaxRepr as _, ViaTypeName as _};
                f.write_str(&::flax::__private::module_repr(#type_name, &[#(#debug_fields),*]))
            }
        }

        impl #impl_generics ::flax::Module for #ident #ty_generics #where_clause {
            const TYPE_NAME: &'static str = #type_name;
            fn module_handle(&self) -> &::flax::__private::ModuleHandle {
                &self.#handle
            }
            fn module_handle_mut(&mut self) -> &mut ::flax::__private::ModuleHandle {
                &mut self.#handle
            }
        }
    }
}

fn setter(vis: &syn::Visibility, f: &Field, generics: &syn::Generics) -> TokenStream {
    let id = &f.ident;
    let ty = argument_type(f, generics);
    let doc = format!("Sets `{id}` (builder style).");
    let rename = f.submodule.then(|| {
        let name = id.to_string();
        quote! { ::flax::__private::SubmoduleField::name_field(&mut self.#id, #name); }
    });
    let fn_name = format_ident!("{}", id);
    quote! {
        #[doc = #doc]
        #vis fn #fn_name(mut self, value: #ty) -> Self {
            self.#id = value.into();
            #rename
            self
        }
    }
}

/// The parameter type of a field's constructor argument or setter: `impl Into<T>` where a
/// conversion cannot change what a call means, so `.kernel_init(zeros())`, `.mask(m)` for an
/// `Option` and `Conv::new(32, [3, 3])` read as in Flax; the field's own type otherwise.
fn argument_type(f: &Field, generics: &syn::Generics) -> TokenStream {
    let ty = &f.ty;
    if converts(f, generics) {
        quote! { impl ::core::convert::Into<#ty> }
    } else {
        quote! { #ty }
    }
}

/// Whether a field's argument can take `impl Into<T>` without breaking calls written for `T`.
/// Not for fields marked `exact` (an alias of a function pointer: a closure or a function item
/// given to `impl Into` does not become one), nor for submodule fields (modules convert from nothing, and `layers.collect()` must still
/// know its target), nor for primitives (an integer literal would fall back to `i32`, which converts to few of
/// them), nor for types with trait objects or smart pointers (an `impl Into` argument loses the
/// unsizing coercion `Box::new(layer)` relies on), nor for types naming the struct's generic
/// parameters (the argument would no longer say which type the parameter is).
fn converts(f: &Field, generics: &syn::Generics) -> bool {
    let ty = &f.ty;
    const PRIMITIVES: [&str; 15] = [
        "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize", "f32", "f64",
        "bool",
    ];
    const POINTERS: [&str; 5] = ["dyn", "impl", "Box", "Arc", "Rc"];
    let generic_names: Vec<String> = generics
        .params
        .iter()
        .filter_map(|p| match p {
            syn::GenericParam::Type(t) => Some(t.ident.to_string()),
            _ => None,
        })
        .collect();
    if f.exact || f.submodule || !matches!(ty, syn::Type::Path(_)) {
        return false;
    }
    let idents = crate::tokens::idents(quote!(#ty));
    let bare_primitive = idents.len() == 1 && PRIMITIVES.contains(&idents[0].as_str());
    !bare_primitive && !idents.iter().any(|i| POINTERS.contains(&i.as_str()) || generic_names.contains(i))
}
