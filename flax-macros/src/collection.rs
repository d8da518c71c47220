//! `#[derive(Collection)]`: clu's `metrics.Collection` for a struct of named metric fields,
//! each created, merged and computed under its field name.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitStr};

/// Expands the derive, or a `compile_error!` at the user's span for anything but a struct
/// with named fields (a metric's name is its field's name).
pub fn derive(input: DeriveInput) -> TokenStream {
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(fields) => &fields.named,
            other => return error(other.span()),
        },
        Data::Enum(data) => return error(data.enum_token.span()),
        Data::Union(data) => return error(data.union_token.span()),
    };
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut where_clause = where_clause.cloned().unwrap_or_else(|| syn::parse_quote!(where));
    for field in fields {
        let ty = &field.ty;
        let bound = quote_spanned!(ty.span()=> #ty: ::flax::training::metrics::Metric);
        where_clause.predicates.push(syn::parse_quote!(#bound));
    }
    let members: Vec<&syn::Ident> = fields.iter().filter_map(|f| f.ident.as_ref()).collect();
    let keys: Vec<LitStr> = members.iter().map(|m| LitStr::new(&m.unraw().to_string(), m.span())).collect();
    let metric = quote!(::flax::training::metrics::Metric);
    quote! {
        #[automatically_derived]
        impl #impl_generics ::flax::training::metrics::Collection for #name #ty_generics #where_clause {
            fn empty() -> Self {
                Self { #(#members: #metric::empty(),)* }
            }

            fn single_from_model_output(
                outputs: &::flax::training::metrics::ModelOutputs<'_>,
            ) -> ::flax::Result<Self> {
                ::core::result::Result::Ok(Self { #(#members: #metric::from_model_output(outputs)?,)* })
            }

            fn merge(self, other: &Self) -> ::flax::Result<Self> {
                ::core::result::Result::Ok(Self { #(#members: #metric::merge(self.#members, &other.#members)?,)* })
            }

            fn compute(&self) -> ::flax::Result<::flax::training::metrics::ComputedMetrics> {
                ::core::result::Result::Ok(::core::iter::Iterator::collect(::core::iter::IntoIterator::into_iter([
                    #((#keys, #metric::compute(&self.#members)?),)*
                ])))
            }
        }
    }
}

fn error(span: proc_macro2::Span) -> TokenStream {
    syn::Error::new(
        span,
        "#[derive(Collection)] supports structs with named fields only: each field is a metric, computed under its name",
    )
    .to_compile_error()
}
