//! Module method bodies as the passes see them: the syntax they share (literals, the scope
//! argument, layer constructions `Type::new(…).builder(…)…`, read by the typed-params scan in
//! `params`, the checks in `check` and the shape checker in `shape`), and `walk`, the one
//! walk of a body that records where it names, declares and calls through its scope, stored
//! in the IR (`ast::Method::uses`) for the checks.

use proc_macro2::Span;
use syn::visit::Visit;

/// Methods of `Scope` whose first argument is a name in the module's namespace (the first
/// three declare params).
const NAMING_METHODS: [&str; 4] = ["param", "param_with_dtype", "param_fn", "perturb"];

/// What a method body does through its scope, in the order it is written.
#[derive(Default)]
pub struct ScopeUses {
    /// Literal names claimed in the module's namespace on the body's straight-line path
    /// (`cx.param("w", …)`, `cx.variable(col, "v", …)`, `cx.perturb("p", …)`, `.name("x")`),
    /// each at its literal. Names in branches, loops and closures are not on it: they may
    /// legitimately repeat.
    pub names: Vec<(String, Span)>,
    /// Params and inline submodules declared anywhere in the body (`AssignSubModuleError`
    /// outside a compact method).
    pub declarations: Vec<Declared>,
}

/// A declaration through the scope.
pub enum Declared {
    /// `cx.param(…)` (also `param_with_dtype`, `param_fn`): the method name's span.
    Param(Span),
    /// `Type::new(…)….method(cx, …)`: the constructor's path, `Type::new`.
    Submodule(syn::Path),
}

/// Walks `body`, whose scope argument is `scope`, once.
pub fn walk(body: &syn::Block, scope: &syn::Ident) -> ScopeUses {
    let mut walker = Walker { scope, conditional: 0, uses: ScopeUses::default() };
    walker.visit_block(body);
    walker.uses
}

struct Walker<'a> {
    scope: &'a syn::Ident,
    /// How many branches, loops and closures enclose the expression being walked.
    conditional: usize,
    uses: ScopeUses,
}

/// A string literal argument: its value and span.
fn string_literal_token(expr: &syn::Expr) -> Option<(String, Span)> {
    string_literal(expr).map(|value| (value, syn::spanned::Spanned::span(expr)))
}

/// The `Type::new` path of a `Type::new(…)` call at the root of a method chain, if that is the root.
fn constructed_type(expr: &syn::Expr) -> Option<&syn::Path> {
    let syn::Expr::Call(c) = innermost(expr) else { return None };
    let syn::Expr::Path(p) = &*c.func else { return None };
    constructor_path(c).is_some().then_some(&p.path)
}

impl Walker<'_> {
    /// Walks code that may not run, or run more than once.
    fn conditional(&mut self, walk: impl FnOnce(&mut Self)) {
        self.conditional += 1;
        walk(self);
        self.conditional -= 1;
    }
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let method = call.method.to_string();
        let on_scope = is_ident(&call.receiver, self.scope);
        let literal = if method == "name" {
            call.args.first().and_then(string_literal_token)
        } else if on_scope {
            match method.as_str() {
                m if NAMING_METHODS.contains(&m) => call.args.first().and_then(string_literal_token),
                "variable" => call.args.iter().nth(1).and_then(string_literal_token),
                _ => None,
            }
        } else {
            None
        };
        if let Some(lit) = literal.filter(|_| self.conditional == 0) {
            self.uses.names.push(lit);
        }
        if on_scope && NAMING_METHODS[..3].contains(&method.as_str()) {
            self.uses.declarations.push(Declared::Param(call.method.span()));
        } else if call.args.first().is_some_and(|a| is_ident(a, self.scope)) {
            if let Some(path) = constructed_type(&call.receiver) {
                self.uses.declarations.push(Declared::Submodule(path.clone()));
            }
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.conditional(|w| syn::visit::visit_expr_if(w, e));
    }
    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.conditional(|w| syn::visit::visit_expr_match(w, e));
    }
    fn visit_expr_closure(&mut self, e: &'ast syn::ExprClosure) {
        self.conditional(|w| syn::visit::visit_expr_closure(w, e));
    }
    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.conditional(|w| syn::visit::visit_expr_for_loop(w, e));
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.conditional(|w| syn::visit::visit_expr_while(w, e));
    }
    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.conditional(|w| syn::visit::visit_expr_loop(w, e));
    }
    // Nested items are not this method's code.
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// The value of a string literal expression.
pub fn string_literal(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
        _ => None,
    }
}

/// Whether `expr` is the bare path `ident` (the scope argument, a `let` binding).
pub fn is_ident(expr: &syn::Expr, ident: &syn::Ident) -> bool {
    matches!(expr, syn::Expr::Path(p) if p.path.is_ident(ident))
}

/// `Type::new(…)`: the type path.
pub fn constructor_path(call: &syn::ExprCall) -> Option<syn::Path> {
    let syn::Expr::Path(p) = &*call.func else { return None };
    let segments = &p.path.segments;
    if segments.len() < 2 || segments.last()?.ident != "new" {
        return None;
    }
    let mut path = p.path.clone();
    path.segments.pop();
    let last = path.segments.pop()?.into_value();
    path.segments.push(last);
    Some(path)
}

/// The call or macro at the bottom of a builder chain `Type::new(…).a(…).b(…)`.
pub fn innermost(mut expr: &syn::Expr) -> &syn::Expr {
    loop {
        match expr {
            syn::Expr::MethodCall(m) => expr = &m.receiver,
            syn::Expr::Paren(p) => expr = &p.expr,
            _ => return expr,
        }
    }
}

/// The builder calls of a chain `Type::new(…).a(x).b(y)`, innermost first: `[a(x), b(y)]`.
pub fn builder_calls(mut expr: &syn::Expr) -> Vec<&syn::ExprMethodCall> {
    let mut calls = Vec::new();
    loop {
        match expr {
            syn::Expr::MethodCall(m) => {
                calls.push(m);
                expr = &m.receiver;
            }
            syn::Expr::Paren(p) => expr = &p.expr,
            _ => break,
        }
    }
    calls.reverse();
    calls
}
