//! `#[module]` on an impl block: module methods, and `init`/`apply` for the compact method.
//!
//! Every `&self` method with a `&mut Scope` argument becomes a module method: the body moves
//! to a hidden `__flax_impl_<name>` and the public method calls it through
//! `Scope::call_method`, which enters the module's scope when a parent calls it. The compact
//! method (or else a method named `call`) gets `init`, `init_with_output`, `init_with`,
//! `tabulate`, `tabulate_with`, `module_paths`, `lazy_init`, `apply` and `apply_with` with its
//! own argument types after the scope. A `call` taking tensors also gets `flax::nn::CallArgs` (see `call_args`), unless the
//! block is `#[module(custom_call_args)]`.

use crate::ast::{Method, ModuleImpl};
use crate::check::Analysis;
use crate::shape::{self, expand::DeclaredMethod};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// The block with its module methods rewritten, `init`/`apply` for its entry method, the
/// shape contracts, the typed params view, `CallArgs` and `setup`'s `DefinesSetup`; after an
/// error in the compact method's signature, the fallback entry points.
pub fn generate(ir: &ModuleImpl, analysis: &Analysis<'_>) -> TokenStream {
    let (methods, declared, call_checks) = (&ir.methods, &analysis.declared, &analysis.call_checks);
    let tables = &analysis.tables;
    let setup = ir.setup.as_ref();
    let call_args = methods
        .iter()
        .find(|m| m.ident() == "call")
        .filter(|_| !ir.custom_call_args)
        .and_then(|m| crate::call_args::generate(&ir.item, m));
    let mut item = ir.item.clone();
    let mut extra = Vec::new();
    for (((m, declared), checks), table) in methods.iter().zip(declared).zip(call_checks).zip(tables) {
        let name = m.ident();
        let hidden = format_ident!("__flax_impl_{}", name);
        for impl_item in item.items.iter_mut() {
            if let syn::ImplItem::Fn(f) = impl_item {
                if f.sig.ident == *name {
                    *f = wrapper(m, &hidden, declared.as_ref());
                    if let Some(declared) = declared {
                        f.attrs.extend(super::shape_doc::doc(declared, table));
                    }
                }
            }
        }
        let mut inner = m.original.clone();
        if let (Some(_), Some(scope)) = (setup, &m.scope) {
            inner.block = crate::setup::with_setup(scope, &inner.block);
        }
        let checks = checks.iter().map(|c| -> syn::Stmt { syn::parse_quote!(#c) });
        inner.block.stmts.splice(0..0, checks);
        inner.sig.ident = hidden;
        inner.vis = syn::Visibility::Inherited;
        inner.attrs.retain(|a| !a.path().is_ident("doc"));
        inner.attrs.push(syn::parse_quote!(#[doc(hidden)]));
        inner.attrs.push(syn::parse_quote!(#[allow(clippy::needless_pass_by_value)]));
        extra.push(syn::ImplItem::Fn(inner));
    }
    if let Some(entry) = ir.entry() {
        extra.extend(init_apply(entry));
    }
    let contracts: Vec<&DeclaredMethod<'_>> = declared.iter().flatten().collect();
    extra.extend(shape::expand::contracts(&contracts));
    let tabled: Vec<_> =
        declared.iter().zip(tables).filter_map(|(d, t)| Some((d.as_ref()?, t.as_slice()))).collect();
    extra.extend(super::shape_doc::table_const(&tabled));
    item.items.extend(extra);
    let params = ir.plain_self_ident().map(|ident| {
        let compact = methods.iter().position(|m| m.compact);
        crate::params::generate(ident, compact.map_or(&[][..], |i| &analysis.uses[i].entries))
    });
    let setup = setup.map(|s| crate::setup::generate_impl(&item.self_ty, &item.generics, s));
    let fallback = ir.rejected_compact.as_ref().map(|m| fallback(&ir.item, m));
    quote!(#item #params #call_args #setup #fallback)
}

/// Argument names for the generated signatures (the user's may be patterns).
fn arg_names(m: &Method) -> Vec<syn::Ident> {
    (0..m.typed_args().len()).map(|i| format_ident!("__flax_arg{}", i)).collect()
}

fn wrapper(m: &Method, hidden: &syn::Ident, declared: Option<&DeclaredMethod<'_>>) -> syn::ImplItemFn {
    let mut f = m.original.clone();
    let names = arg_names(m);
    let mut i = 0;
    for input in f.sig.inputs.iter_mut() {
        if let syn::FnArg::Typed(t) = input {
            let name = &names[i];
            *t.pat = syn::parse_quote!(#name);
            i += 1;
        }
    }
    let scope = &names[m.scope_index];
    let method_name = m.ident().to_string();
    let compact = m.compact;
    let pass = names
        .iter()
        .enumerate()
        .map(|(i, n)| if i == m.scope_index { quote!(__flax_cx) } else { quote!(#n) });
    let described = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != m.scope_index)
        .map(|(_, n)| quote!((&&::flax::__private::Probe(&#n)).__flax_describe()));
    let user_names: Vec<String> = m
        .typed_args()
        .iter()
        .enumerate()
        .map(|(i, arg)| match &*arg.pat {
            syn::Pat::Ident(p) => p.ident.to_string(),
            _ => format!("argument {i}"),
        })
        .collect();
    let checks = names.iter().zip(&user_names).enumerate().filter(|(i, _)| *i != m.scope_index).map(
        |(_, (n, user))| {
            quote!((&::flax::__private::Probe(&#n)).__flax_check_defined(&*#scope, <Self as ::flax::Module>::TYPE_NAME, #method_name, #user)?;)
        },
    );
    let body = match declared {
        None => quote!(|__flax_cx| self.#hidden(#(#pass),*)),
        Some(declared) => {
            let args: Vec<TokenStream> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != m.scope_index)
                .map(|(_, n)| quote!(#n))
                .collect();
            let (before, after) = shape::expand::guard(declared, &args, shape::is_tensor(&m.output));
            quote!(|__flax_cx| {
                #before
                let __flax_out = self.#hidden(#(#pass),*)?;
                #after
                ::flax::Result::Ok(__flax_out)
            })
        }
    };
    f.block = syn::parse_quote!({
        #[allow(unused_imports)]
        use ::flax::__private::{ViaDescribeDebug as _, ViaDescribeTypeName as _, ViaDescribeValue as _, ViaIntermediate as _, ViaOpaque as _, ViaCheckTensors as _, ViaNoTensors as _};
        #(#checks)*
        let __flax_described = ::flax::Scope::is_recording_calls(#scope).then(|| ::flax::__private::Described {
            module: ::std::format!("{:?}", self),
            inputs: ::std::vec![#(#described),*],
        });
        ::flax::Scope::call_method(
            #scope,
            ::flax::Module::module_handle(self),
            <Self as ::flax::Module>::TYPE_NAME,
            #method_name,
            #compact,
            #body,
            |__flax_out| (&::flax::__private::Probe(__flax_out)).__flax_intermediate(),
            __flax_described,
        )
    });
    f
}

/// thiserror's fallback: after an error in the compact method's signature, `init`, `apply`
/// and the other entry points are still generated, with bodies that never run (the crate does
/// not compile), so that their callers give no second error.
fn fallback(item: &syn::ItemImpl, m: &Method) -> TokenStream {
    let items = init_apply(m).into_iter().map(|mut item| {
        if let syn::ImplItem::Fn(f) = &mut item {
            f.attrs.push(syn::parse_quote!(#[allow(unused_variables)]));
            f.block = syn::parse_quote!({
                ::core::unreachable!("#[module] reported a compile error for this module's compact method")
            });
        }
        item
    });
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    quote!(impl #impl_generics #self_ty #where_clause { #(#items)* })
}

/// `init`, `init_with_output`, `init_with`, `tabulate`, `tabulate_with`, `module_paths`,
/// `lazy_init`, `apply`, `apply_with` for the entry method.
fn init_apply(m: &Method) -> Vec<syn::ImplItem> {
    let method = m.ident();
    let output = &m.output;
    let args = m.typed_args();
    let names = arg_names(m);
    let params: Vec<TokenStream> = args
        .iter()
        .zip(&names)
        .enumerate()
        .filter(|(i, _)| *i != m.scope_index)
        .map(|(_, (a, n))| {
            let ty = &a.ty;
            quote!(#n: #ty)
        })
        .collect();
    let pass: Vec<TokenStream> = names
        .iter()
        .enumerate()
        .map(|(i, n)| if i == m.scope_index { quote!(__flax_cx) } else { quote!(#n) })
        .collect();
    let outer: Vec<&syn::Ident> =
        names.iter().enumerate().filter(|(i, _)| *i != m.scope_index).map(|(_, n)| n).collect();
    let probes: Vec<TokenStream> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != m.scope_index)
        .map(|(_, n)| quote!((&::flax::__private::Probe(&#n)).__flax_device()))
        .collect();
    // The device of the first tensor argument; the array is typed so that it may be empty.
    let count = probes.len();
    let first_device = quote!({
        let __flax_devices: [::core::option::Option<::flax::tch::Device>; #count] = [#(#probes),*];
        ::core::iter::IntoIterator::into_iter(__flax_devices).flatten().next()
    });
    let vis = &m.original.vis;
    let doc_init = format!("Initializes the variables by running `{method}` (Flax's `init`), with the `params` RNG stream from `rngs`.");
    // Located at the user's method (errors in calls of `init`/`apply` point there), resolved
    // as the macro's own code (its names, and lints that skip macro output).
    let span = proc_macro2::Span::call_site().located_at(method.span());
    let items: syn::ItemImpl = syn::parse_quote_spanned! {span=>
        impl __FlaxGenerated {
            #[doc = #doc_init]
            #vis fn init(&self, rngs: impl ::core::convert::Into<::flax::Rngs>, #(#params),*) -> ::flax::Result<::flax::Variables> {
                self.init_with(::flax::ApplyOptions::new().rngs(rngs), #(#outer),*).map(|(_, v)| v)
            }

            /// Like `init`, also returning the output of the run (Flax's `init_with_output`).
            #vis fn init_with_output(&self, rngs: impl ::core::convert::Into<::flax::Rngs>, #(#params),*) -> ::flax::Result<(#output, ::flax::Variables)> {
                self.init_with(::flax::ApplyOptions::new().rngs(rngs), #(#outer),*)
            }

            /// `init` with all of Flax's options (`mutable`, `capture_intermediates`, device).
            #vis fn init_with(&self, options: ::flax::ApplyOptions, #(#params),*) -> ::flax::Result<(#output, ::flax::Variables)> {
                #[allow(unused_imports)]
                use ::flax::__private::{ViaDevice as _, ViaNoDevice as _};
                let mut options = options;
                if options.device.is_none() {
                    options.device = #first_device;
                }
                <Self as ::flax::Module>::init_method(self, options, |__flax_m, __flax_cx| __flax_m.#method(#(#pass),*))
            }

            /// The module's summary table (Flax's `tabulate`): runs `init` with `rngs` and lists
            /// every module call with its inputs, outputs and variables.
            #vis fn tabulate(&self, rngs: impl ::core::convert::Into<::flax::Rngs>, #(#params),*) -> ::flax::Result<::std::string::String> {
                self.tabulate_with(rngs, &::flax::summary::TabulateOptions::new(), #(#outer),*)
            }

            /// `tabulate` with Flax's options (`depth`, `show_repeated`, `mutable`, console width).
            #vis fn tabulate_with(&self, rngs: impl ::core::convert::Into<::flax::Rngs>, options: &::flax::summary::TabulateOptions, #(#params),*) -> ::flax::Result<::std::string::String> {
                #[allow(unused_imports)]
                use ::flax::__private::{ViaDevice as _, ViaNoDevice as _};
                let mut options = ::core::clone::Clone::clone(options);
                if options.device.is_none() {
                    options.device = #first_device;
                }
                ::flax::summary::tabulate(self, ::core::convert::Into::into(rngs), &options, |__flax_m, __flax_cx| __flax_m.#method(#(#pass),*))
            }

            /// Every module a run of `init` reaches, by path, in the order they are first
            /// called (Flax's `module_paths`).
            #vis fn module_paths(&self, rngs: impl ::core::convert::Into<::flax::Rngs>, #(#params),*) -> ::flax::Result<::flax::__private::IndexMap<::std::string::String, ::flax::ModuleInfo>> {
                #[allow(unused_imports)]
                use ::flax::__private::{ViaDevice as _, ViaNoDevice as _};
                ::flax::core::module_paths::module_paths(self, ::core::convert::Into::into(rngs), #first_device, |__flax_m, __flax_cx| __flax_m.#method(#(#pass),*))
            }

            /// `init` from inputs of which only the shapes and dtypes are known (Flax's
            /// `lazy_init`): pass `flax::ShapeDtypeStruct::placeholder()` tensors for them.
            /// A variable computed from a placeholder's values is an `Error::LazyInit`.
            #vis fn lazy_init(&self, rngs: impl ::core::convert::Into<::flax::Rngs>, #(#params),*) -> ::flax::Result<::flax::Variables> {
                ::flax::core::lazy_init::lazy_init(|| self.init(rngs, #(#outer),*))
            }

            /// Runs the module with `variables` (Flax's `apply` with nothing mutable).
            #vis fn apply(&self, variables: &::flax::Variables, #(#params),*) -> ::flax::Result<#output> {
                self.apply_with(variables, ::flax::ApplyOptions::new(), #(#outer),*).map(|(out, _)| out)
            }

            /// `apply` with Flax's options (`rngs`, `mutable`, `capture_intermediates`); returns
            /// the output and the mutable collections after the run.
            #vis fn apply_with(&self, variables: &::flax::Variables, options: impl ::core::convert::Into<::flax::ApplyOptions>, #(#params),*) -> ::flax::Result<(#output, ::flax::Variables)> {
                <Self as ::flax::Module>::apply_method(self, variables, options, |__flax_m, __flax_cx| __flax_m.#method(#(#pass),*))
            }
        }
    };
    items.items
}
