//! The checks of a parsed module (serde_derive's `internals::check`): each reads the IR and
//! reports to the `Ctxt`, so every error of one expansion is reported together.
//!
//! Most raise Flax's runtime errors at compile time where the syntax proves them: reserved
//! attribute names, options on `#[setup]` fields, a literal name used twice on one
//! straight-line path of a compact body (`NameInUseError`), a param or an inline submodule in
//! a method that is not `#[compact]` (`AssignSubModuleError`). Names built at run time, or
//! repeated in different branches, are left to the runtime checks. Declared methods go
//! through the shape pass (`crate::shape`), driven by the same walk of the body; the
//! expansion also uses its results.

use crate::ast::{ModuleImpl, ModuleStruct};
use crate::ctxt::Ctxt;
use crate::shape::{self, expand::DeclaredMethod};
use crate::walk::{self, Declared, ScopeUses};
use proc_macro2::TokenStream;

/// Flax reserves these attribute names on every module (`ReservedModuleAttributeError`).
const RESERVED: [&str; 2] = ["name", "parent"];

/// The checks of a module struct.
pub fn module_struct(cx: &Ctxt, ir: &ModuleStruct) {
    for f in ir.fields.iter().chain(&ir.setup_fields) {
        if RESERVED.contains(&f.ident.to_string().as_str()) {
            cx.error_at(
                f.ident.span(),
                format!(
                    "properties `parent` and `name` are reserved: `{}` cannot be a module attribute \
                     (Flax's ReservedModuleAttributeError); set a module's name with `.name(\"…\")`",
                    f.ident
                ),
            );
        }
    }
    for f in ir.setup_fields.iter().filter(|f| f.default.is_some() || f.submodule) {
        cx.error_at(
            f.ident.span(),
            "a #[setup] field is set by the module's `setup`: it takes no default and is named as a submodule already",
        );
    }
}

/// What the checks of an impl block give the expansion, per module method: its resolved
/// shape declaration, the `const` items of the shape pass (statements for the start of its
/// body), the table of its submodule calls' shapes (for the rustdoc) and the walk of its body
/// (the typed params view reads the compact method's).
pub struct Analysis<'a> {
    pub declared: Vec<Option<DeclaredMethod<'a>>>,
    pub call_checks: Vec<Vec<TokenStream>>,
    pub tables: Vec<Vec<shape::table::Row>>,
    pub uses: Vec<ScopeUses>,
}

/// The checks of a module impl block: one walk of each method body (`crate::walk`), which
/// also drives the shape pass of a declared method.
pub fn module_impl<'a>(cx: &Ctxt, ir: &'a ModuleImpl) -> Analysis<'a> {
    let resolved: Vec<_> = ir
        .methods
        .iter()
        .map(|m| Some(shape::resolve(m.shape.as_ref()?, m.ident(), &m.user_args(), &m.output)))
        .collect();
    let mut checkers: Vec<Option<shape::Checker<'a>>> = ir
        .methods
        .iter()
        .zip(&resolved)
        .map(|(m, resolved)| {
            let (Some(Ok(d)), Some(scope)) = (resolved, &m.scope) else { return None };
            let generics = ir.item.generics.type_params().chain(m.original.sig.generics.type_params());
            let generics = generics.map(|p| p.ident.to_string()).collect();
            Some(shape::Checker::new(d, scope, generics, ir.plain_self_ident()))
        })
        .collect();
    let uses = ir
        .methods
        .iter()
        .zip(&mut checkers)
        .map(|(m, checker)| {
            let Some(scope) = &m.scope else { return ScopeUses::default() };
            let uses = walk::walk(&m.original.block, scope, checker.as_mut());
            if m.compact {
                duplicate_literal_names(cx, &uses);
            } else {
                declarations_outside_compact(cx, &uses);
            }
            uses
        })
        .collect();
    let declared = resolved
        .into_iter()
        .map(|r| r?.map_err(|es| es.into_iter().for_each(|e| cx.syn_error(e))).ok())
        .collect();
    let (call_checks, tables) = checkers
        .into_iter()
        .zip(&uses)
        .map(|(checker, uses)| {
            let Some(checked) = checker.map(shape::Checker::finish) else { return (Vec::new(), Vec::new()) };
            checked.errors.into_iter().for_each(|e| cx.syn_error(e));
            (checked.call_checks, shape::table::rows(&checked.table, uses))
        })
        .unzip();
    Analysis { declared, call_checks, tables, uses }
}

/// `NameInUseError` for literal names declared twice on one path through a compact body.
fn duplicate_literal_names(cx: &Ctxt, uses: &ScopeUses) {
    for (i, (name, span)) in uses.names.iter().enumerate() {
        if uses.names[..i].iter().any(|(earlier, _)| earlier == name) {
            cx.error_at(
                *span,
                format!(
                    "Could not create \"{name}\": Name in use. Params, variables and submodules of one \
                     module share one namespace (Flax's NameInUseError)"
                ),
            );
        }
    }
}

/// `AssignSubModuleError` for params and inline submodules in a method that is not compact.
fn declarations_outside_compact(cx: &Ctxt, uses: &ScopeUses) {
    for declared in &uses.declarations {
        match declared {
            Declared::Param(span) => cx.error_at(
                *span,
                "params are declared in the #[compact] method; mark this method #[compact] or move \
                 the declaration there (Flax's AssignSubModuleError)",
            ),
            Declared::Submodule(path) => {
                let ty: Vec<String> =
                    path.segments.iter().take(path.segments.len() - 1).map(|s| s.ident.to_string()).collect();
                cx.error_spanned_by(
                    path,
                    format!(
                        "Submodule {} must be defined in a #[compact] method, or held in a #[submodule] \
                         field (Flax's AssignSubModuleError)",
                        ty.join("::")
                    ),
                );
            }
        }
    }
}
