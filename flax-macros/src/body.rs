//! Syntax of module method bodies that the passes over them share: literals, the scope
//! argument, and layer constructions `Type::new(…).builder(…)…` (the body walk in `walk` and
//! the shape checker in `shape` read submodules through these).

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
