//! `#[derive(Tree)]`: parse a struct into its fields and their roles, validate, and expand to
//! an `impl ::flax::tree::Tree` that walks the tree fields in declaration order and clones
//! the static ones.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr, Member, Type};

/// Expands the derive; errors are returned as `compile_error!`s at the user's spans, next to
/// an implementation for whatever could be understood, so that one mistake gives one error.
pub fn derive(input: DeriveInput) -> TokenStream {
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        Data::Enum(data) => return unsupported(data.enum_token.span(), "an enum"),
        Data::Union(data) => return unsupported(data.union_token.span(), "a union"),
    };
    let mut errors = Vec::new();
    let fields = parse_fields(fields, &mut errors);
    check_unique_keys(&fields, &mut errors);
    let implementation = expand(&input, &fields);
    let errors = errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    });
    let errors = errors.map(|e| e.to_compile_error());
    quote!(#implementation #errors)
}

fn unsupported(span: proc_macro2::Span, what: &str) -> TokenStream {
    let message = format!(
        "#[derive(Tree)] supports structs only, not {what}: a pytree node needs a fixed set of children \
         (wrap the alternatives in `Option` fields or a `Value` instead)"
    );
    syn::Error::new(span, message).to_compile_error()
}

/// One field and its role in the tree.
struct TreeField<'a> {
    member: Member,
    ty: &'a Type,
    /// The key in key paths and state dicts (the field name, its position, or `rename`).
    key: LitStr,
    /// Where `rename` was given, if it was.
    rename: Option<proc_macro2::Span>,
    is_static: bool,
}

fn parse_fields<'a>(fields: &'a Fields, errors: &mut Vec<syn::Error>) -> Vec<TreeField<'a>> {
    fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let member = match &field.ident {
                Some(ident) => Member::Named(ident.clone()),
                None => Member::Unnamed(index.into()),
            };
            let name = field.ident.as_ref().map_or_else(|| index.to_string(), |i| i.unraw().to_string());
            let key = LitStr::new(&name, field.span());
            let mut parsed = TreeField { member, ty: &field.ty, key, rename: None, is_static: false };
            for attr in field.attrs.iter().filter(|a| a.path().is_ident("tree")) {
                if let Err(e) = parse_field_attr(attr, &mut parsed) {
                    errors.push(e);
                }
            }
            if let (Some(span), true) = (parsed.rename, parsed.is_static) {
                let message =
                    "a `static` field has no key in paths or state dicts, so `rename` has no effect on it";
                errors.push(syn::Error::new(span, message));
            }
            parsed
        })
        .collect()
}

/// Reads one `#[tree(...)]` attribute: `static` and `rename = "..."`.
fn parse_field_attr(attr: &syn::Attribute, field: &mut TreeField<'_>) -> syn::Result<()> {
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("static") {
            if field.is_static {
                return Err(meta.error("duplicate `static`"));
            }
            field.is_static = true;
            Ok(())
        } else if meta.path.is_ident("rename") {
            if field.rename.is_some() {
                return Err(meta.error("duplicate `rename`"));
            }
            field.rename = Some(meta.path.span());
            field.key = meta.value()?.parse()?;
            Ok(())
        } else {
            Err(meta.error("unknown tree attribute: expected `static` or `rename = \"...\"`"))
        }
    })
}

/// Two tree fields with the same key would collide in key paths and state dicts.
fn check_unique_keys(fields: &[TreeField<'_>], errors: &mut Vec<syn::Error>) {
    let keyed: Vec<&TreeField<'_>> = fields.iter().filter(|f| !f.is_static).collect();
    for (i, field) in keyed.iter().enumerate() {
        if keyed[..i].iter().any(|earlier| earlier.key.value() == field.key.value()) {
            let message = format!("two fields have the key \"{}\" in the tree", field.key.value());
            errors.push(syn::Error::new(field.key.span(), message));
        }
    }
}

fn expand(input: &DeriveInput, fields: &[TreeField<'_>]) -> TokenStream {
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut where_clause = where_clause.cloned().unwrap_or_else(|| syn::parse_quote!(where));
    for field in fields {
        let ty = field.ty;
        let bound = if field.is_static {
            quote_spanned!(ty.span()=> #ty: ::core::clone::Clone)
        } else {
            quote_spanned!(ty.span()=> #ty: ::flax::tree::Tree)
        };
        where_clause.predicates.push(syn::parse_quote!(#bound));
    }
    let (nodes, statics): (Vec<_>, Vec<_>) = fields.iter().partition(|f| !f.is_static);
    let node_members: Vec<&Member> = nodes.iter().map(|f| &f.member).collect();
    let node_keys: Vec<&LitStr> = nodes.iter().map(|f| &f.key).collect();
    let node_vars: Vec<syn::Ident> =
        (0..nodes.len()).map(|i| quote::format_ident!("__flax_field_{}", i)).collect();
    let static_members: Vec<&Member> = statics.iter().map(|f| &f.member).collect();

    quote! {
        #[automatically_derived]
        #[allow(unused_variables)]
        impl #impl_generics ::flax::tree::Tree for #name #ty_generics #where_clause {
            fn visit_leaves<'__flax_t, const __FLAX_N: usize>(
                &'__flax_t self,
                others: [&'__flax_t Self; __FLAX_N],
                path: &mut ::flax::tree::KeyPath<'__flax_t>,
                f: &mut ::flax::tree::VisitFn<'_, '__flax_t, __FLAX_N>,
            ) -> ::flax::Result<()> {
                #(path.scoped(::flax::tree::Key::Name(#node_keys), |path| {
                    ::flax::tree::Tree::visit_leaves(&self.#node_members, others.map(|o| &o.#node_members), path, f)
                })?;)*
                ::core::result::Result::Ok(())
            }

            fn visit_leaves_mut<'__flax_t, const __FLAX_N: usize>(
                &'__flax_t mut self,
                others: [&'__flax_t Self; __FLAX_N],
                path: &mut ::flax::tree::KeyPath<'__flax_t>,
                f: &mut ::flax::tree::VisitMutFn<'_, '__flax_t, __FLAX_N>,
            ) -> ::flax::Result<()> {
                #(path.scoped(::flax::tree::Key::Name(#node_keys), |path| {
                    ::flax::tree::Tree::visit_leaves_mut(&mut self.#node_members, others.map(|o| &o.#node_members), path, f)
                })?;)*
                ::core::result::Result::Ok(())
            }

            fn map_leaves<'__flax_t, const __FLAX_N: usize>(
                &'__flax_t self,
                others: [&'__flax_t Self; __FLAX_N],
                path: &mut ::flax::tree::KeyPath<'__flax_t>,
                f: &mut ::flax::tree::MapFn<'_, '__flax_t, __FLAX_N>,
            ) -> ::flax::Result<Self> {
                ::core::result::Result::Ok(Self {
                    #(#node_members: path.scoped(::flax::tree::Key::Name(#node_keys), |path| {
                        ::flax::tree::Tree::map_leaves(&self.#node_members, others.map(|o| &o.#node_members), path, f)
                    })?,)*
                    #(#static_members: ::core::clone::Clone::clone(&self.#static_members),)*
                })
            }

            fn state_dict(&self) -> ::flax::Value {
                ::flax::tree::struct_state_dict([
                    #((#node_keys, ::flax::tree::Tree::state_dict_entry(&self.#node_members)),)*
                ])
            }

            fn restore_state_dict<'__flax_t>(
                &'__flax_t self,
                state: &::flax::Value,
                path: &mut ::flax::tree::KeyPath<'__flax_t>,
                report: &mut ::flax::tree::StateDictMismatches,
            ) -> ::core::option::Option<Self> {
                let entries = ::flax::tree::struct_state(state, &[#(#node_keys),*], path, report)?;
                // Every field is restored before any failure is returned, so that all
                // mismatches are reported.
                #(let #node_vars = path.scoped(::flax::tree::Key::Name(#node_keys), |path| {
                    ::flax::tree::Tree::restore_state_dict_entry(&self.#node_members, entries.get(#node_keys), path, report)
                });)*
                ::core::option::Option::Some(Self {
                    #(#node_members: #node_vars?,)*
                    #(#static_members: ::core::clone::Clone::clone(&self.#static_members),)*
                })
            }
        }
    }
}
