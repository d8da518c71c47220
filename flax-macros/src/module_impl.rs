//! `#[module]` on an impl block: module methods, and `init`/`apply` for the compact method.
//!
//! Every `&self` method with a `&mut Scope` argument becomes a module method: the body moves
//! to a hidden `__flax_impl_<name>` and the public method calls it through
//! `Scope::call_method`, which enters the module's scope when a parent calls it. The compact
//! method (or else a method named `call`) gets `init`, `init_with_output`, `init_with`,
//! `tabulate`, `tabulate_with`, `module_paths`, `lazy_init`, `apply` and `apply_with` with its
//! own argument types after the scope. A `call` taking tensors also gets `flax::nn::CallArgs` (see `call_args`), unless the
//! block is `#[module(custom_call_args)]`.

use crate::checks;
use crate::shape::{self, expand::DeclaredMethod, Declaration};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};

/// A method that takes a scope, split into the pieces the expansion needs.
struct ScopeMethod {
    method: syn::ImplItemFn,
    compact: bool,
    /// Position of the `&mut Scope` argument among the typed (non-self) arguments.
    scope_index: usize,
    /// The `T` of the `Result<T>` the method returns.
    output: syn::Type,
    /// Its `#[shape(…)]` declaration.
    shape: Option<Declaration>,
}

pub fn expand(attr: TokenStream, mut item: syn::ItemImpl) -> TokenStream {
    let mut errors = Errors::default();
    let custom_call_args = match syn::parse2::<Option<syn::Ident>>(attr.clone()) {
        Ok(None) => false,
        Ok(Some(ident)) if ident == "custom_call_args" => true,
        _ => {
            errors.push(syn::Error::new_spanned(
                &attr,
                "#[module] on an impl block takes no arguments, or `custom_call_args` when the \
                 module implements `flax::nn::CallArgs` itself",
            ));
            false
        }
    };
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(syn::Error::new_spanned(
            path,
            "#[module] applies to an inherent impl block, not a trait impl",
        ));
        return errors.with(quote!(#item));
    }
    let (setup, setup_error) = crate::setup::take(&mut item);
    if let Some(e) = setup_error {
        errors.push(e);
    }
    let mut methods = Vec::new();
    // The first compact method whose signature was rejected: callers' `init`/`apply` are still
    // generated from it (see `fallback`).
    let mut rejected_compact = None;
    let mut compact_seen = false;
    for impl_item in item.items.iter_mut() {
        let syn::ImplItem::Fn(f) = impl_item else { continue };
        let compact = take_compact_attr(f);
        let declaration = shape::decl::take(f).unwrap_or_else(|e| {
            errors.push(e);
            None
        });
        if compact && compact_seen {
            errors.push(syn::Error::new(
                f.sig.ident.span(),
                "Only one method per class can be @compact: a module has at most one #[compact] method \
                 (Flax's MultipleMethodsCompactError)",
            ));
        }
        compact_seen |= compact;
        match classify(f, compact) {
            Ok(Some(m)) => methods.push(ScopeMethod { shape: declaration, ..m }),
            Ok(None) if declaration.is_some() => errors.push(syn::Error::new(
                f.sig.ident.span(),
                "#[shape] declares the tensors of a module method: one taking `cx: &mut Scope`",
            )),
            Ok(None) => {}
            Err(e) => {
                errors.push(e);
                if compact && rejected_compact.is_none() {
                    rejected_compact = Some(fallback_method(f));
                }
            }
        }
    }
    for m in &methods {
        if let Some(scope) = scope_ident(&m.method, m.scope_index) {
            let found = if m.compact {
                checks::duplicate_literal_names(&m.method.block, &scope)
            } else {
                checks::declarations_outside_compact(&m.method.block, &scope)
            };
            for e in found {
                errors.push(e);
            }
        }
    }
    // Errors leave the expansion whole (the methods rewritten, `init`/`apply` and the setup
    // generated): one error per mistake, not one per use of what the mistake would remove.
    let mut declared = Vec::new();
    for m in &methods {
        declared.push(m.shape.as_ref().and_then(|d| {
            let args: Vec<(Option<syn::Ident>, &syn::Type)> = typed_args(&m.method)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i != m.scope_index)
                .map(|(_, a)| (pat_ident(&a.pat), &*a.ty))
                .collect();
            shape::resolve(d, &m.method.sig.ident, &args, &m.output)
                .map_err(|es| es.into_iter().for_each(|e| errors.push(e)))
                .ok()
        }));
    }
    let mut call_checks = Vec::new();
    for (m, d) in methods.iter().zip(&declared) {
        let checked = match (d, scope_ident(&m.method, m.scope_index)) {
            (Some(d), Some(scope)) => {
                let generics = item.generics.type_params().chain(m.method.sig.generics.type_params());
                let generics = generics.map(|p| p.ident.to_string()).collect();
                shape::check(d, &m.method.block, &scope, generics, plain_self_ident(&item))
            }
            _ => shape::Checked { errors: Vec::new(), call_checks: Vec::new() },
        };
        checked.errors.into_iter().for_each(|e| errors.push(e));
        call_checks.push(checked.call_checks);
    }
    let mut generated = generate(&item, &methods, &declared, &call_checks, custom_call_args, setup.as_ref());
    if let Some(m) = rejected_compact.filter(|_| !methods.iter().any(|m| m.compact)) {
        generated.extend(fallback(&item, &m));
    }
    errors.with(generated)
}

fn pat_ident(pat: &syn::Pat) -> Option<syn::Ident> {
    match pat {
        syn::Pat::Ident(p) => Some(p.ident.clone()),
        _ => None,
    }
}

#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }
    /// The errors followed by `tokens`, so downstream code still sees the items (one error
    /// per mistake, not one per use).
    fn with(self, tokens: TokenStream) -> TokenStream {
        let errors = self.0.map(|e| e.to_compile_error());
        quote! { #errors #tokens }
    }
}

fn take_compact_attr(f: &mut syn::ImplItemFn) -> bool {
    let before = f.attrs.len();
    f.attrs.retain(|a| !(a.path().is_ident("compact") || path_ends_with(a.path(), "compact")));
    before != f.attrs.len()
}

fn path_ends_with(path: &syn::Path, name: &str) -> bool {
    path.segments.last().is_some_and(|s| s.ident == name)
        && path.segments.len() == 2
        && path.segments[0].ident == "flax"
}

/// Whether `ty` is `&mut Scope` (any path ending in `Scope`, any lifetime).
pub(crate) fn is_scope_type(ty: &syn::Type) -> bool {
    let syn::Type::Reference(r) = ty else { return false };
    if r.mutability.is_none() {
        return false;
    }
    matches!(&*r.elem, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Scope"))
}

fn typed_args(f: &syn::ImplItemFn) -> Vec<&syn::PatType> {
    f.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(t) => Some(t),
            syn::FnArg::Receiver(_) => None,
        })
        .collect()
}

fn classify(f: &syn::ImplItemFn, compact: bool) -> syn::Result<Option<ScopeMethod>> {
    let scope_index = typed_args(f).iter().position(|a| is_scope_type(&a.ty));
    let Some(scope_index) = scope_index else {
        if compact {
            return Err(syn::Error::new(
                f.sig.ident.span(),
                "a #[compact] method takes the module's scope: add an argument `cx: &mut Scope`",
            ));
        }
        return Ok(None);
    };
    let by_ref_self = matches!(f.sig.inputs.first(), Some(syn::FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none());
    if !by_ref_self {
        return Err(syn::Error::new(
            f.sig.ident.span(),
            "a module method takes `&self`: modules are immutable configuration values",
        ));
    }
    let output = result_ok_type(&f.sig.output).ok_or_else(|| {
        syn::Error::new_spanned(
            &f.sig.output,
            "a module method returns `flax::Result<T>` (errors of params and submodules propagate with `?`)",
        )
    })?;
    Ok(Some(ScopeMethod { method: f.clone(), compact, scope_index, output, shape: None }))
}

/// `T` of a return type `Result<T>` / `flax::Result<T>` / `Result<T, E>`.
fn result_ok_type(output: &syn::ReturnType) -> Option<syn::Type> {
    let syn::ReturnType::Type(_, ty) = output else { return None };
    let syn::Type::Path(p) = &**ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

fn scope_ident(f: &syn::ImplItemFn, scope_index: usize) -> Option<syn::Ident> {
    match &*typed_args(f).get(scope_index)?.pat {
        syn::Pat::Ident(p) => Some(p.ident.clone()),
        _ => None,
    }
}

fn generate(
    item: &syn::ItemImpl,
    methods: &[ScopeMethod],
    declared: &[Option<DeclaredMethod<'_>>],
    call_checks: &[Vec<TokenStream>],
    custom_call_args: bool,
    setup: Option<&crate::setup::SetupMethod>,
) -> TokenStream {
    let call_args = methods
        .iter()
        .find(|m| m.method.sig.ident == "call")
        .filter(|_| !custom_call_args)
        .and_then(|m| crate::call_args::generate(item, &m.method, m.scope_index, &m.output));
    let mut item = item.clone();
    let mut extra = Vec::new();
    for ((m, declared), checks) in methods.iter().zip(declared).zip(call_checks) {
        let name = &m.method.sig.ident;
        let hidden = format_ident!("__flax_impl_{}", name);
        for impl_item in item.items.iter_mut() {
            if let syn::ImplItem::Fn(f) = impl_item {
                if f.sig.ident == *name {
                    *f = wrapper(m, &hidden, declared.as_ref());
                }
            }
        }
        let mut inner = m.method.clone();
        if let (Some(_), Some(scope)) = (setup, scope_ident(&m.method, m.scope_index)) {
            inner.block = crate::setup::with_setup(&scope, &inner.block);
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
    let entry =
        methods.iter().find(|m| m.compact).or_else(|| methods.iter().find(|m| m.method.sig.ident == "call"));
    if let Some(entry) = entry {
        extra.extend(init_apply(entry));
    }
    let contracts: Vec<&DeclaredMethod<'_>> = declared.iter().flatten().collect();
    extra.extend(shape::expand::contracts(&contracts));
    item.items.extend(extra);
    let params = plain_self_ident(&item).map(|ident| {
        let compact = methods
            .iter()
            .find(|m| m.compact)
            .and_then(|m| scope_ident(&m.method, m.scope_index).map(|scope| (&m.method.block, scope)));
        crate::params::generate(ident, compact.as_ref().map(|(b, s)| (*b, s)))
    });
    let setup = setup.map(|s| crate::setup::generate_impl(&item.self_ty, &item.generics, s));
    quote!(#item #params #call_args #setup)
}

/// The self type's name when it is a plain, non-generic type (typed params views are
/// generated only for those).
fn plain_self_ident(item: &syn::ItemImpl) -> Option<&syn::Ident> {
    if !item.generics.params.is_empty() {
        return None;
    }
    match &*item.self_ty {
        syn::Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            let segment = &p.path.segments[0];
            segment.arguments.is_none().then_some(&segment.ident)
        }
        _ => None,
    }
}

/// Argument names for the generated signatures (the user's may be patterns).
fn arg_names(m: &ScopeMethod) -> Vec<syn::Ident> {
    (0..typed_args(&m.method).len()).map(|i| format_ident!("__flax_arg{}", i)).collect()
}

fn wrapper(m: &ScopeMethod, hidden: &syn::Ident, declared: Option<&DeclaredMethod<'_>>) -> syn::ImplItemFn {
    let mut f = m.method.clone();
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
    let method_name = m.method.sig.ident.to_string();
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
    let user_names: Vec<String> = typed_args(&m.method)
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

/// A compact method whose signature was rejected, taken as it is for its entry points: its
/// arguments (no scope left out where it has none) and its `Result`'s `T`, or its return type.
fn fallback_method(f: &syn::ImplItemFn) -> ScopeMethod {
    let scope_index = typed_args(f).iter().position(|a| is_scope_type(&a.ty)).unwrap_or(usize::MAX);
    let output = result_ok_type(&f.sig.output).unwrap_or_else(|| match &f.sig.output {
        syn::ReturnType::Type(_, ty) => (**ty).clone(),
        syn::ReturnType::Default => syn::parse_quote!(()),
    });
    ScopeMethod { method: f.clone(), compact: true, scope_index, output, shape: None }
}

/// thiserror's fallback: after an error in the compact method's signature, `init`, `apply`
/// and the other entry points are still generated, with bodies that never run (the crate does
/// not compile), so that their callers give no second error.
fn fallback(item: &syn::ItemImpl, m: &ScopeMethod) -> TokenStream {
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
fn init_apply(m: &ScopeMethod) -> Vec<syn::ImplItem> {
    let method = &m.method.sig.ident;
    let output = &m.output;
    let args = typed_args(&m.method);
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
    let vis = &m.method.vis;
    let doc_init = format!("Initializes the variables by running `{method}` (Flax's `init`), with the `params` RNG stream from `rngs`.");
    let span = Span::call_site();
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
