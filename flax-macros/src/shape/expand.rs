//! What a declaration adds to the expansion: the contract constant other modules' checks
//! read and the run-time guard in the method's wrapper (the `const` items of a declared
//! body's calls of user modules are `deferred`'s).

use super::decl::{DeclDim, DeclShape, Declaration};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

/// A declared method: its name, declaration and the positions of the declared inputs among
/// the arguments after the scope.
pub struct DeclaredMethod<'a> {
    pub method: String,
    pub declaration: &'a Declaration,
    pub positions: Vec<usize>,
}

fn dims(shape: &DeclShape, run_time: bool) -> TokenStream {
    let dims = shape.dims.iter().map(|d| match d {
        DeclDim::Lit(n) => quote!(::flax::__private::shape::Dim::Size(#n)),
        DeclDim::Sym(s) => {
            let name = s.to_string();
            quote!(::flax::__private::shape::Dim::Sym(#name))
        }
        DeclDim::Field(f) if run_time => {
            let name = f.to_string();
            quote_spanned!(f.span()=> ::flax::__private::shape::Dim::Value(#name, ::flax::__private::shape::size(self.#f)))
        }
        DeclDim::Field(f) => {
            let name = f.to_string();
            quote!(::flax::__private::shape::Dim::Field(#name))
        }
        DeclDim::Any => quote!(::flax::__private::shape::Dim::Any),
    });
    quote!([#(#dims),*])
}

/// `__FLAX_SHAPE`: the contracts of the block's declared methods, an inherent constant that
/// takes precedence over `Undeclared`'s (so it is read across crates, by rustc).
pub fn contracts(methods: &[&DeclaredMethod<'_>]) -> Option<syn::ImplItem> {
    if methods.is_empty() {
        return None;
    }
    let items = methods.iter().map(|m| {
        let (method, text) = (&m.method, m.declaration.text());
        let inputs = m.declaration.inputs.iter().zip(&m.positions).map(|(input, position)| {
            let name = input.name.to_string();
            let dims = dims(&input.shape, false);
            quote!(::flax::__private::shape::Input { name: #name, position: #position, dims: &#dims })
        });
        let output = match &m.declaration.output {
            Some(out) => {
                let dims = dims(out, false);
                quote!(::core::option::Option::Some(&#dims))
            }
            None => quote!(::core::option::Option::None),
        };
        quote!(::flax::__private::shape::Contract { method: #method, text: #text, inputs: &[#(#inputs),*], output: #output })
    });
    Some(syn::parse_quote! {
        #[doc(hidden)]
        pub const __FLAX_SHAPE: &'static [::flax::__private::shape::Contract] = &[#(#items),*];
    })
}

/// The guard's statements around the hidden call in the wrapper: before (input checks, on
/// the argument expressions `args`) and after (the output check on `__flax_out`).
pub fn guard(
    m: &DeclaredMethod<'_>,
    args: &[TokenStream],
    output_is_tensor: bool,
) -> (TokenStream, TokenStream) {
    let (method, text) = (&m.method, m.declaration.text());
    let inputs = m.declaration.inputs.iter().zip(&m.positions).map(|(input, &position)| {
        let name = input.name.to_string();
        let dims = dims(&input.shape, true);
        let arg = &args[position];
        quote! {
            __flax_guard.check(&*__flax_cx, #name, ::core::borrow::Borrow::<::flax::tch::Tensor>::borrow(&#arg), &#dims)?;
        }
    });
    let before = quote! {
        let mut __flax_guard = ::flax::__private::shape::Guard::new(<Self as ::flax::Module>::TYPE_NAME, #method, #text);
        #(#inputs)*
    };
    let after = match (&m.declaration.output, output_is_tensor) {
        (Some(out), true) => {
            let dims = dims(out, true);
            quote!(__flax_guard.check(&*__flax_cx, "output", &__flax_out, &#dims)?;)
        }
        _ => quote!(),
    };
    (before, after)
}

/// The element type of a `Vec<T>` or `[T; N]` field.
fn element_type(ty: &syn::Type) -> Option<&syn::Type> {
    match ty {
        syn::Type::Array(a) => Some(&a.elem),
        syn::Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
            match (last.ident == "Vec", args.args.first(), args.args.len()) {
                (true, Some(syn::GenericArgument::Type(elem)), 1) => Some(elem),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `__FLAX_FIELDS`: the contracts of each submodule field's type, by field name, an inherent
/// constant of a non-generic `#[module]` struct. The impl block's checks read it (they see
/// `self.encoder.call(…)` but not the field's type); a type without a declaration gives no
/// contract through `Undeclared`. A `Vec<T>` or `[T; N]` field also lists `T`'s contracts as
/// `field[]`, for the calls of its elements (`self.layers[i].call(…)`).
pub fn field_contracts(fields: &[(&syn::Ident, &syn::Type)]) -> Option<TokenStream> {
    if fields.is_empty() {
        return None;
    }
    let elements: Vec<(String, &syn::Type)> =
        fields.iter().filter_map(|(ident, ty)| Some((format!("{ident}[]"), element_type(ty)?))).collect();
    let listed = fields.iter().map(|(ident, ty)| (ident.to_string(), *ty)).chain(elements);
    let entries = listed.map(|(field, ty)| {
        quote! {
            ::flax::__private::shape::FieldContracts {
                field: #field,
                contracts: {
                    #[allow(unused_imports)]
                    use ::flax::__private::shape::Undeclared as _;
                    <#ty>::__FLAX_SHAPE
                },
            }
        }
    });
    Some(quote! {
        #[doc(hidden)]
        pub const __FLAX_FIELDS: &'static [::flax::__private::shape::FieldContracts] = &[#(#entries),*];
    })
}
