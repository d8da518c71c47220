//! The one parsed representation of what `#[module]` is given (serde_derive's
//! `internals::ast`): a module struct with its field options, or a module impl block with its
//! module methods classified once (compact or not, where the scope is, what the `Result`
//! holds, the `#[shape]` declaration). Parsing reports to the `Ctxt`
//! and keeps going, so `check` and `expand` see every method; each node keeps the user's
//! syntax for spans.

use crate::ctxt::Ctxt;
use crate::setup::SetupMethod;
use crate::shape::{self, Declaration};
use darling::FromField;
use proc_macro2::TokenStream;

/// Field options: `#[module(default = expr)]`, `#[module(submodule)]` (also `#[submodule]`),
/// `#[module(exact)]` (the setter takes the field's type itself, not `impl Into`),
/// `#[module(setup)]` (also `#[setup]`).
#[derive(FromField, Default)]
#[darling(attributes(module), default)]
struct FieldOpts {
    default: Option<syn::Expr>,
    submodule: bool,
    exact: bool,
    setup: bool,
}

/// A `#[module]` struct.
pub struct ModuleStruct {
    /// The struct as it is emitted: field options taken off, `#[setup]` fields taken out.
    pub item: syn::ItemStruct,
    /// The attributes (fields set by the constructor and setters).
    pub fields: Vec<Field>,
    /// The `#[setup]` fields (set by the module's `setup`, see `crate::setup`).
    pub setup_fields: Vec<Field>,
}

/// A named field of a module struct with its options.
pub struct Field {
    pub ident: syn::Ident,
    pub ty: syn::Type,
    pub vis: syn::Visibility,
    pub default: Option<syn::Expr>,
    pub submodule: bool,
    pub exact: bool,
    /// Filled by the module's `setup` (see `crate::setup`), not an attribute.
    pub setup: bool,
}

impl ModuleStruct {
    /// `None` for a tuple struct, which leaves nothing to generate (it is then emitted as
    /// written, after the error).
    pub fn from_syn(cx: &Ctxt, attr: &TokenStream, mut item: syn::ItemStruct) -> Option<ModuleStruct> {
        if !attr.is_empty() {
            cx.error_spanned_by(attr, "#[module] on a struct takes no arguments");
        }
        if matches!(item.fields, syn::Fields::Unnamed(_)) {
            cx.error_spanned_by(&item.fields, "a #[module] struct has named fields (its attributes)");
            return None;
        }
        let fields = parse_fields(cx, &mut item);
        let (setup_fields, fields): (Vec<Field>, Vec<Field>) = fields.into_iter().partition(|f| f.setup);
        if let syn::Fields::Named(named) = &mut item.fields {
            let kept = named
                .named
                .iter()
                .filter(|f| !setup_fields.iter().any(|s| f.ident.as_ref() == Some(&s.ident)));
            named.named = kept.cloned().collect();
        }
        Some(ModuleStruct { item, fields, setup_fields })
    }
}

/// The named fields with their options (a unit struct has none). A field whose options do
/// not parse is reported and kept with the default options, so that the generated
/// constructor still has it (one error per mistake).
fn parse_fields(cx: &Ctxt, item: &mut syn::ItemStruct) -> Vec<Field> {
    let syn::Fields::Named(named) = &mut item.fields else {
        item.fields = syn::Fields::Named(syn::parse_quote!({}));
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in named.named.iter_mut() {
        let opts = FieldOpts::from_field(field).unwrap_or_else(|e| {
            cx.syn_error(e.into());
            FieldOpts::default()
        });
        let bare = |name: &str| field.attrs.iter().any(|a| a.path().is_ident(name));
        let (bare_submodule, bare_setup) = (bare("submodule"), bare("setup"));
        field.attrs.retain(|a| !["module", "submodule", "setup"].iter().any(|n| a.path().is_ident(n)));
        out.push(Field {
            ident: field.ident.clone().expect("named fields have identifiers"),
            ty: field.ty.clone(),
            vis: field.vis.clone(),
            default: opts.default,
            submodule: opts.submodule || bare_submodule,
            exact: opts.exact,
            setup: opts.setup || bare_setup,
        });
    }
    out
}

/// A `#[module]` impl block.
pub struct ModuleImpl {
    /// The block as the user wrote it, less the `#[compact]`/`#[shape]` attributes and `fn
    /// setup` (its other items are emitted as they are).
    pub item: syn::ItemImpl,
    /// `#[module(custom_call_args)]`: the module implements `flax::nn::CallArgs` itself.
    pub custom_call_args: bool,
    /// Its `fn setup`, taken out of the block.
    pub setup: Option<SetupMethod>,
    /// The module methods (those taking the scope), in order.
    pub methods: Vec<Method>,
    /// The first compact method whose signature was rejected: callers' `init`/`apply` are
    /// still generated from it (thiserror's fallback).
    pub rejected_compact: Option<Method>,
}

/// A module method: a `&self` method with a `&mut Scope` argument.
pub struct Method {
    /// The method as written (attributes of this macro taken off): the spans of everything
    /// generated for it.
    pub original: syn::ImplItemFn,
    pub compact: bool,
    /// Position of the `&mut Scope` argument among the typed (non-self) arguments
    /// (`usize::MAX` in a rejected compact method without one).
    pub scope_index: usize,
    /// The scope argument's name, when it is a plain binding.
    pub scope: Option<syn::Ident>,
    /// The `T` of the `Result<T>` the method returns.
    pub output: syn::Type,
    /// Its `#[shape(…)]` declaration.
    pub shape: Option<Declaration>,
}

impl ModuleImpl {
    /// The self type's name when it is a plain, non-generic type (typed params views are
    /// generated only for those).
    pub fn plain_self_ident(&self) -> Option<&syn::Ident> {
        let item = &self.item;
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

    /// `None` for a trait impl, which is emitted as written (after the error).
    pub fn from_syn(cx: &Ctxt, attr: &TokenStream, mut item: syn::ItemImpl) -> Option<ModuleImpl> {
        let custom_call_args = match syn::parse2::<Option<syn::Ident>>(attr.clone()) {
            Ok(None) => false,
            Ok(Some(ident)) if ident == "custom_call_args" => true,
            _ => {
                cx.error_spanned_by(
                    attr,
                    "#[module] on an impl block takes no arguments, or `custom_call_args` when the \
                     module implements `flax::nn::CallArgs` itself",
                );
                false
            }
        };
        if let Some((_, path, _)) = &item.trait_ {
            cx.error_spanned_by(path, "#[module] applies to an inherent impl block, not a trait impl");
            return None;
        }
        let (setup, setup_error) = crate::setup::take(&mut item);
        if let Some(e) = setup_error {
            cx.syn_error(e);
        }
        let mut methods = Vec::new();
        let mut rejected_compact = None;
        let mut compact_seen = false;
        for impl_item in item.items.iter_mut() {
            let syn::ImplItem::Fn(f) = impl_item else { continue };
            let compact = take_compact_attr(f);
            let declaration = shape::decl::take(f).unwrap_or_else(|e| {
                cx.syn_error(e);
                None
            });
            if compact && compact_seen {
                cx.error_at(
                    f.sig.ident.span(),
                    "Only one method per class can be @compact: a module has at most one #[compact] method \
                     (Flax's MultipleMethodsCompactError)",
                );
            }
            compact_seen |= compact;
            match Method::classify(f, compact) {
                Ok(Some(m)) => methods.push(Method { shape: declaration, ..m }),
                Ok(None) if declaration.is_some() => cx.error_at(
                    f.sig.ident.span(),
                    "#[shape] declares the tensors of a module method: one taking `cx: &mut Scope`",
                ),
                Ok(None) => {}
                Err(e) => {
                    cx.syn_error(e);
                    if compact && rejected_compact.is_none() {
                        rejected_compact = Some(Method::rejected(f));
                    }
                }
            }
        }
        let rejected_compact = rejected_compact.filter(|_| !methods.iter().any(|m| m.compact));
        Some(ModuleImpl { item, custom_call_args, setup, methods, rejected_compact })
    }

    /// The compact method, else the method named `call`: the one `init`/`apply` run.
    pub fn entry(&self) -> Option<&Method> {
        self.methods.iter().find(|m| m.compact).or_else(|| self.methods.iter().find(|m| m.ident() == "call"))
    }
}

impl Method {
    fn classify(f: &syn::ImplItemFn, compact: bool) -> syn::Result<Option<Method>> {
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
        Ok(Some(Method::new(f, compact, scope_index, output)))
    }

    /// A compact method whose signature was rejected, taken as it is for its entry points: its
    /// arguments (no scope left out where it has none) and its `Result`'s `T`, or its return
    /// type.
    fn rejected(f: &syn::ImplItemFn) -> Method {
        let scope_index = typed_args(f).iter().position(|a| is_scope_type(&a.ty)).unwrap_or(usize::MAX);
        let output = result_ok_type(&f.sig.output).unwrap_or_else(|| match &f.sig.output {
            syn::ReturnType::Type(_, ty) => (**ty).clone(),
            syn::ReturnType::Default => syn::parse_quote!(()),
        });
        Method::new(f, true, scope_index, output)
    }

    fn new(f: &syn::ImplItemFn, compact: bool, scope_index: usize, output: syn::Type) -> Method {
        let scope = typed_args(f).get(scope_index).and_then(|a| pat_ident(&a.pat));
        Method { original: f.clone(), compact, scope_index, scope, output, shape: None }
    }

    pub fn ident(&self) -> &syn::Ident {
        &self.original.sig.ident
    }

    /// The typed (non-self) arguments, the scope among them.
    pub fn typed_args(&self) -> Vec<&syn::PatType> {
        typed_args(&self.original)
    }

    /// The arguments after the scope (what callers pass): their names and types.
    pub fn user_args(&self) -> Vec<(Option<syn::Ident>, &syn::Type)> {
        self.typed_args()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != self.scope_index)
            .map(|(_, a)| (pat_ident(&a.pat), &*a.ty))
            .collect()
    }
}

fn pat_ident(pat: &syn::Pat) -> Option<syn::Ident> {
    match pat {
        syn::Pat::Ident(p) => Some(p.ident.clone()),
        _ => None,
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
pub fn is_scope_type(ty: &syn::Type) -> bool {
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
