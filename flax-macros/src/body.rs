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

/// The variable an assignment or a mutable borrow changes: the root of `x`, `x.field`,
/// `x[i]`, `(x)` (`self` for a field of the module).
pub fn assigned_variable(expr: &syn::Expr) -> Option<String> {
    match expr {
        syn::Expr::Path(p) => p.path.get_ident().map(ToString::to_string),
        syn::Expr::Field(f) => assigned_variable(&f.base),
        syn::Expr::Index(i) => assigned_variable(&i.expr),
        syn::Expr::Paren(p) => assigned_variable(&p.expr),
        _ => None,
    }
}

/// `+=`, `-=`, … (assignments that read their left side).
pub fn is_compound_assign(op: &syn::BinOp) -> bool {
    use syn::BinOp::*;
    matches!(
        op,
        AddAssign(_)
            | SubAssign(_)
            | MulAssign(_)
            | DivAssign(_)
            | RemAssign(_)
            | BitXorAssign(_)
            | BitAndAssign(_)
            | BitOrAssign(_)
            | ShlAssign(_)
            | ShrAssign(_)
    )
}
