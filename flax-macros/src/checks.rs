//! Body scans behind the compile-time versions of Flax's runtime errors.
//!
//! They are syntactic, so they only report what the syntax proves: a literal name used twice
//! on one straight-line path of a compact body (`NameInUseError`), and a param or an inline
//! submodule call in a method that is not `#[compact]` (`AssignSubModuleError`). Names built
//! at run time, or repeated in different branches, are left to the runtime checks.

use crate::body::{constructor_path, innermost, is_ident, string_literal};
use syn::visit::Visit;

/// Methods of `Scope` whose first argument is a name in the module's namespace.
const NAMING_METHODS: [&str; 4] = ["param", "param_with_dtype", "param_fn", "perturb"];

/// `NameInUseError` for literal names declared twice on one path through a compact body.
pub fn duplicate_literal_names(body: &syn::Block, scope: &syn::Ident) -> Vec<syn::Error> {
    let mut finder = Names { scope, found: Vec::new() };
    finder.visit_block(body);
    let mut errors = Vec::new();
    for (i, (name, span)) in finder.found.iter().enumerate() {
        if finder.found[..i].iter().any(|(earlier, _)| earlier == name) {
            errors.push(syn::Error::new(
                *span,
                format!(
                    "Could not create \"{name}\": Name in use. Params, variables and submodules of one \
                     module share one namespace (Flax's NameInUseError)"
                ),
            ));
        }
    }
    errors
}

struct Names<'a> {
    scope: &'a syn::Ident,
    found: Vec<(String, proc_macro2::Span)>,
}

/// A string literal argument: its value and span.
fn string_literal_token(expr: &syn::Expr) -> Option<(String, proc_macro2::Span)> {
    string_literal(expr).map(|value| (value, syn::spanned::Spanned::span(expr)))
}

impl<'ast> Visit<'ast> for Names<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let method = call.method.to_string();
        let literal = if method == "name" {
            call.args.first().and_then(string_literal_token)
        } else if is_ident(&call.receiver, self.scope) {
            match method.as_str() {
                m if NAMING_METHODS.contains(&m) => call.args.first().and_then(string_literal_token),
                "variable" => call.args.iter().nth(1).and_then(string_literal_token),
                _ => None,
            }
        } else {
            None
        };
        if let Some(lit) = literal {
            self.found.push(lit);
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    // Different branches and repeated bodies may legitimately reuse a name.
    fn visit_expr_if(&mut self, _: &'ast syn::ExprIf) {}
    fn visit_expr_match(&mut self, _: &'ast syn::ExprMatch) {}
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_expr_for_loop(&mut self, _: &'ast syn::ExprForLoop) {}
    fn visit_expr_while(&mut self, _: &'ast syn::ExprWhile) {}
    fn visit_expr_loop(&mut self, _: &'ast syn::ExprLoop) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// `AssignSubModuleError` for params and inline submodules in a method that is not compact.
pub fn declarations_outside_compact(body: &syn::Block, scope: &syn::Ident) -> Vec<syn::Error> {
    let mut finder = Declarations { scope, errors: Vec::new() };
    finder.visit_block(body);
    finder.errors
}

struct Declarations<'a> {
    scope: &'a syn::Ident,
    errors: Vec<syn::Error>,
}

/// The `Type::new` path of a `Type::new(…)` call at the root of a method chain, if that is the root.
fn constructed_type(expr: &syn::Expr) -> Option<&syn::Path> {
    let syn::Expr::Call(c) = innermost(expr) else { return None };
    let syn::Expr::Path(p) = &*c.func else { return None };
    constructor_path(c).is_some().then_some(&p.path)
}

impl<'ast> Visit<'ast> for Declarations<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let method = call.method.to_string();
        if is_ident(&call.receiver, self.scope) && NAMING_METHODS[..3].contains(&method.as_str()) {
            self.errors.push(syn::Error::new(
                call.method.span(),
                "params are declared in the #[compact] method; mark this method #[compact] or move \
                 the declaration there (Flax's AssignSubModuleError)",
            ));
        } else if call.args.first().is_some_and(|a| is_ident(a, self.scope)) {
            if let Some(path) = constructed_type(&call.receiver) {
                let ty: Vec<String> =
                    path.segments.iter().take(path.segments.len() - 1).map(|s| s.ident.to_string()).collect();
                self.errors.push(syn::Error::new_spanned(
                    path,
                    format!(
                        "Submodule {} must be defined in a #[compact] method, or held in a #[submodule] \
                         field (Flax's AssignSubModuleError)",
                        ty.join("::")
                    ),
                ));
            }
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}
