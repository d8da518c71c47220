//! The checker's interpreter: it walks a method body statement by statement, tracking the
//! shape of every tensor binding it can follow, and reports the errors that hold for every
//! value of the declaration's symbols.
//!
//! Only straight-line code is followed. The branches of `if`/`match`, loop bodies and
//! closures may not run (or run with other shapes), so nothing is concluded inside them, and
//! the variables they assign are unknown afterwards; so are variables mutated in place (a
//! method ending in `_`, a `&mut` borrow). Anything not in the vocabulary gives an unknown
//! shape, from which nothing is concluded.

use super::dim::{show, Dim, Shape};
use super::layers::{self, Layer};
use super::ops::{self, Target};
use crate::body::{constructor_path, innermost, is_ident};
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;

/// What the interpreter knows of a value.
#[derive(Clone)]
pub enum Val {
    Tensor(Shape),
    /// An integer: a literal, a size read from a tensor, arithmetic of them.
    Int(Dim),
    /// `self.field` (and arithmetic with it): a size when used as one, else unknown.
    Field(Dim),
    /// A floating-point literal.
    Scalar,
    /// `x.size()`, `x.size4()?`.
    Sizes(Shape),
    Layer(Layer),
    Other,
}

/// A call of a user module: checked against its `#[shape]` contract by rustc.
pub struct UserCall {
    pub path: syn::Path,
    pub method: syn::Ident,
    /// The shapes of the arguments after the scope (`None`: not a tensor of known rank).
    pub args: Vec<Option<Vec<Dim>>>,
    /// The argument expressions, as written.
    pub texts: Vec<String>,
    pub span: Span,
}

pub struct Checker<'a> {
    scope: &'a syn::Ident,
    /// The type parameters in scope (of the impl and the method).
    generics: Vec<String>,
    env: Vec<(String, Val)>,
    pub errors: Vec<syn::Error>,
    pub user_calls: Vec<UserCall>,
    /// The declared output and the method's name, for the output check.
    output: Option<(Shape, String)>,
}

/// An argument as the user wrote it, near enough for a message (`&x`, `x.relu()`).
fn source_text(expr: &syn::Expr) -> String {
    quote::ToTokens::to_token_stream(expr)
        .to_string()
        .replace("& ", "&")
        .replace(" . ", ".")
        .replace(" (", "(")
}

/// The names a pattern binds.
fn pattern_names(pat: &syn::Pat) -> Vec<String> {
    struct Names(Vec<String>);
    impl<'ast> Visit<'ast> for Names {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.push(p.ident.to_string());
            syn::visit::visit_pat_ident(self, p);
        }
    }
    let mut names = Names(Vec::new());
    names.visit_pat(pat);
    names.0
}

/// The variables an expression may change: assigned, mutated in place or borrowed mutably.
fn assigned_names(expr: &syn::Expr) -> Vec<String> {
    struct Assigned(Vec<String>);
    fn root(expr: &syn::Expr) -> Option<String> {
        match expr {
            syn::Expr::Path(p) => p.path.get_ident().map(ToString::to_string),
            syn::Expr::Field(f) => root(&f.base),
            syn::Expr::Index(i) => root(&i.expr),
            syn::Expr::Paren(p) => root(&p.expr),
            _ => None,
        }
    }
    impl<'ast> Visit<'ast> for Assigned {
        fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
            self.0.extend(root(&e.left));
            syn::visit::visit_expr_assign(self, e);
        }
        fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
            if is_compound_assign(&e.op) {
                self.0.extend(root(&e.left));
            }
            syn::visit::visit_expr_binary(self, e);
        }
        fn visit_expr_reference(&mut self, e: &'ast syn::ExprReference) {
            if e.mutability.is_some() {
                self.0.extend(root(&e.expr));
            }
            syn::visit::visit_expr_reference(self, e);
        }
        fn visit_expr_method_call(&mut self, e: &'ast syn::ExprMethodCall) {
            if e.method.to_string().ends_with('_') {
                self.0.extend(root(&e.receiver));
            }
            syn::visit::visit_expr_method_call(self, e);
        }
        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            self.0.extend(macro_names(m));
        }
    }
    let mut found = Assigned(Vec::new());
    found.visit_expr(expr);
    found.0
}

/// The variables a macro may assign: none for the standard formatting and assertion
/// macros, else every identifier it is given.
fn macro_names(mac: &syn::Macro) -> Vec<String> {
    const PURE: [&str; 17] = [
        "println",
        "print",
        "eprintln",
        "eprint",
        "format",
        "assert",
        "assert_eq",
        "assert_ne",
        "debug_assert",
        "debug_assert_eq",
        "debug_assert_ne",
        "dbg",
        "vec",
        "panic",
        "todo",
        "unreachable",
        "unimplemented",
    ];
    if mac.path.segments.last().is_some_and(|s| PURE.contains(&s.ident.to_string().as_str())) {
        return Vec::new();
    }
    fn idents(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
        for token in tokens {
            match token {
                proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
                proc_macro2::TokenTree::Group(g) => idents(g.stream(), out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    idents(mac.tokens.clone(), &mut out);
    out
}

fn is_compound_assign(op: &syn::BinOp) -> bool {
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

/// Tensor methods (also as `f_…`) whose output has the receiver's shape.
const SAME_SHAPE_METHODS: [&str; 44] = [
    "relu",
    "relu6",
    "gelu",
    "sigmoid",
    "tanh",
    "silu",
    "elu",
    "selu",
    "celu",
    "leaky_relu",
    "softplus",
    "mish",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "log_sigmoid",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "abs",
    "neg",
    "sin",
    "cos",
    "square",
    "reciprocal",
    "erf",
    "sign",
    "clamp",
    "clamp_min",
    "clamp_max",
    "softmax",
    "log_softmax",
    "shallow_clone",
    "copy",
    "contiguous",
    "detach",
    "to_kind",
    "to_device",
    "zeros_like",
    "ones_like",
    "dropout",
    "logical_not",
    "pow_tensor_scalar",
];

/// Tensor methods taking a second tensor, broadcast with the receiver.
const BROADCAST_METHODS: [&str; 8] = ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "atan2"];

impl<'a> Checker<'a> {
    pub fn new(scope: &'a syn::Ident, generics: Vec<String>, method: String, output: Option<Shape>) -> Self {
        Checker {
            scope,
            generics,
            env: Vec::new(),
            errors: Vec::new(),
            user_calls: Vec::new(),
            output: output.map(|o| (o, method)),
        }
    }

    pub fn bind(&mut self, name: String, val: Val) {
        self.env.push((name, val));
    }

    fn lookup(&self, name: &str) -> Val {
        self.env.iter().rev().find(|(n, _)| n == name).map_or(Val::Other, |(_, v)| v.clone())
    }

    /// Updates the innermost binding of `name` (an assignment).
    fn assign(&mut self, name: &str, val: Val) {
        if let Some(slot) = self.env.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = val;
        }
    }

    fn forget(&mut self, names: Vec<String>) {
        for name in names {
            self.assign(&name, Val::Other);
        }
    }

    fn error(&mut self, node: &dyn quote::ToTokens, message: String) {
        self.errors.push(syn::Error::new_spanned(node, message));
    }

    /// Checks a body: its statements in order, its tail against the declared output.
    pub fn block(&mut self, block: &syn::Block, is_body: bool) -> Val {
        let depth = self.env.len();
        let mut value = Val::Other;
        for (i, stmt) in block.stmts.iter().enumerate() {
            let last = i + 1 == block.stmts.len();
            value = match stmt {
                syn::Stmt::Local(local) => {
                    self.local(local);
                    Val::Other
                }
                syn::Stmt::Expr(expr, semi) => {
                    let v = self.eval(expr);
                    if last && semi.is_none() {
                        if is_body {
                            self.check_output(expr, &v);
                        }
                        v
                    } else {
                        Val::Other
                    }
                }
                syn::Stmt::Macro(m) => {
                    self.forget(macro_names(&m.mac));
                    Val::Other
                }
                syn::Stmt::Item(_) => Val::Other,
            };
        }
        self.env.truncate(depth);
        value
    }

    fn check_output(&mut self, expr: &syn::Expr, value: &Val) {
        let Some((declared, method)) = &self.output else { return };
        let Val::Tensor(inferred) = value else { return };
        let (Some(want), Some(got)) = (declared, inferred) else { return };
        let mismatch = want.len() != got.len() || want.iter().zip(got).any(|(w, g)| w.differs(g));
        if mismatch {
            let message = format!(
                "shape mismatch: `{method}` is declared to return {} (#[shape]), but this returns {}",
                show(declared),
                show(inferred)
            );
            self.error(expr, message);
        }
    }

    fn local(&mut self, local: &syn::Local) {
        let value = match &local.init {
            Some(init) => {
                let v = self.eval(&init.expr);
                if let Some((_, diverge)) = &init.diverge {
                    self.forget(assigned_names(diverge));
                }
                v
            }
            None => Val::Other,
        };
        self.bind_pattern(&local.pat, value);
    }

    fn bind_pattern(&mut self, pat: &syn::Pat, value: Val) {
        match (pat, value) {
            (syn::Pat::Ident(p), value) if p.subpat.is_none() => self.bind(p.ident.to_string(), value),
            (syn::Pat::Type(t), value) => self.bind_pattern(&t.pat, value),
            (syn::Pat::Tuple(t), Val::Sizes(Some(dims))) if t.elems.len() == dims.len() => {
                for (p, d) in t.elems.iter().zip(dims) {
                    self.bind_pattern(p, Val::Int(d));
                }
            }
            (pat, _) => {
                for name in pattern_names(pat) {
                    self.bind(name, Val::Other);
                }
            }
        }
    }

    /// A size argument (`Dense::new(self.features)`, a reshape target).
    pub fn dim_of(&mut self, expr: &syn::Expr) -> Dim {
        match self.eval(expr) {
            Val::Int(d) | Val::Field(d) => d,
            _ => Dim::Unknown,
        }
    }

    pub fn eval(&mut self, expr: &syn::Expr) -> Val {
        match expr {
            syn::Expr::Path(p) => match p.path.get_ident() {
                Some(ident) => self.lookup(&ident.to_string()),
                None => Val::Other,
            },
            syn::Expr::Lit(l) => match &l.lit {
                syn::Lit::Int(i) => i.base10_parse().map_or(Val::Other, |n| Val::Int(Dim::lit(n))),
                syn::Lit::Float(_) => Val::Scalar,
                _ => Val::Other,
            },
            syn::Expr::Field(f) => match (&*f.base, &f.member) {
                (syn::Expr::Path(p), syn::Member::Named(name)) if p.path.is_ident("self") => {
                    Val::Field(Dim::atom(format!("self.{name}")))
                }
                _ => {
                    self.eval(&f.base);
                    Val::Other
                }
            },
            syn::Expr::Paren(p) => self.eval(&p.expr),
            syn::Expr::Group(g) => self.eval(&g.expr),
            syn::Expr::Try(t) => self.eval(&t.expr),
            syn::Expr::Reference(r) => {
                let v = self.eval(&r.expr);
                if r.mutability.is_some() {
                    self.forget(assigned_names(expr));
                    return Val::Other;
                }
                v
            }
            syn::Expr::Cast(c) => match self.eval(&c.expr) {
                v @ (Val::Int(_) | Val::Field(_)) => v,
                _ => Val::Other,
            },
            syn::Expr::Unary(u) => match (&u.op, self.eval(&u.expr)) {
                (syn::UnOp::Neg(_), Val::Int(d)) => Val::Int(d.mul(&Dim::lit(-1))),
                (syn::UnOp::Neg(_), v @ (Val::Tensor(_) | Val::Scalar)) => v,
                (syn::UnOp::Deref(_), v) => v,
                _ => Val::Other,
            },
            syn::Expr::Binary(b) => self.binary(b),
            syn::Expr::Assign(a) => {
                let v = self.eval(&a.right);
                match &*a.left {
                    syn::Expr::Path(p) if p.path.get_ident().is_some() => {
                        let name = p.path.get_ident().expect("checked").to_string();
                        self.assign(&name, v);
                    }
                    _ => self.forget(assigned_names(expr)),
                }
                Val::Other
            }
            syn::Expr::Index(i) => {
                let base = self.eval(&i.expr);
                let index = self.eval(&i.index);
                match (base, index) {
                    (Val::Sizes(Some(dims)), Val::Int(d)) => {
                        match d.as_lit().and_then(|n| usize::try_from(n).ok()).and_then(|n| dims.get(n)) {
                            Some(dim) => Val::Int(dim.clone()),
                            None => Val::Other,
                        }
                    }
                    _ => Val::Other,
                }
            }
            syn::Expr::Block(b) if b.label.is_none() => self.block(&b.block, false),
            syn::Expr::Unsafe(u) => self.block(&u.block, false),
            syn::Expr::MethodCall(m) => self.method_call(m),
            syn::Expr::Call(c) => self.call(c),
            syn::Expr::Return(r) => {
                if let Some(e) = &r.expr {
                    let v = self.eval(e);
                    self.check_output(e, &v);
                }
                Val::Other
            }
            syn::Expr::Tuple(t) => {
                for e in &t.elems {
                    self.eval(e);
                }
                Val::Other
            }
            syn::Expr::Array(a) => {
                for e in &a.elems {
                    self.eval(e);
                }
                Val::Other
            }
            // Conditional or repeated code: nothing is concluded inside; what it may change
            // is unknown afterwards. (The condition of an `if` and the scrutinee of a
            // `match` always run.)
            syn::Expr::If(i) => {
                self.eval(&i.cond);
                self.forget(assigned_names(expr));
                Val::Other
            }
            syn::Expr::Match(m) => {
                self.eval(&m.expr);
                self.forget(assigned_names(expr));
                Val::Other
            }
            _ => {
                self.forget(assigned_names(expr));
                Val::Other
            }
        }
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> Val {
        use syn::BinOp::*;
        let left = self.eval(&b.left);
        if matches!(b.op, And(_) | Or(_)) {
            // The right side may not run.
            self.forget(assigned_names(&b.right));
            return Val::Other;
        }
        let right = self.eval(&b.right);
        let arithmetic = matches!(b.op, Add(_) | Sub(_) | Mul(_) | Div(_) | Rem(_));
        let compound = matches!(b.op, AddAssign(_) | SubAssign(_) | MulAssign(_) | DivAssign(_));
        if !arithmetic && !compound {
            if is_compound_assign(&b.op) {
                self.forget(assigned_names(&b.left));
            }
            return Val::Other;
        }
        let result = match (&left, &right) {
            (Val::Tensor(x), Val::Tensor(y)) => match ops::broadcast(x, y) {
                Ok(shape) => Val::Tensor(shape),
                Err(message) => {
                    self.error(b, message);
                    Val::Tensor(None)
                }
            },
            (Val::Tensor(x), Val::Int(_) | Val::Scalar) | (Val::Int(_) | Val::Scalar, Val::Tensor(x)) => {
                Val::Tensor(x.clone())
            }
            (Val::Int(x) | Val::Field(x), Val::Int(y) | Val::Field(y)) => {
                let d = match b.op {
                    Mul(_) | MulAssign(_) => x.mul(y),
                    Add(_) | AddAssign(_) => x.add(y),
                    Sub(_) | SubAssign(_) => x.add(&y.mul(&Dim::lit(-1))),
                    Div(_) | DivAssign(_) => x.div(y).unwrap_or(Dim::Unknown),
                    _ => Dim::Unknown,
                };
                if matches!((&left, &right), (Val::Int(_), Val::Int(_))) {
                    Val::Int(d)
                } else {
                    Val::Field(d)
                }
            }
            _ => Val::Other,
        };
        if compound {
            // In place: the variable keeps its shape only if the result has it.
            let keeps = matches!((&left, &result), (Val::Tensor(Some(x)), Val::Tensor(Some(y))) if x == y);
            if !keeps {
                self.forget(assigned_names(&b.left));
            }
            return Val::Other;
        }
        result
    }

    fn method_call(&mut self, call: &syn::ExprMethodCall) -> Val {
        let method = call.method.to_string();
        if call.args.first().is_some_and(|a| is_ident(a, self.scope)) {
            return self.layer_call(call);
        }
        let whole = syn::Expr::MethodCall(call.clone());
        if let syn::Expr::Call(inner) = innermost(&whole) {
            if constructor_path(inner).is_some() {
                // A construction with builder calls, bound for later.
                return self.construction(&whole);
            }
        }
        let receiver = self.eval(&call.receiver);
        let args: Vec<Val> = call.args.iter().map(|a| self.eval(a)).collect();
        if method.ends_with('_') {
            self.forget(assigned_names(&syn::Expr::MethodCall(call.clone())));
            return Val::Other;
        }
        let Val::Tensor(shape) = receiver else {
            return match (receiver, method.as_str()) {
                (v @ (Val::Int(_) | Val::Field(_)), "into" | "clone") => v,
                _ => Val::Other,
            };
        };
        let name = method.strip_prefix("f_").unwrap_or(&method);
        match name {
            n if SAME_SHAPE_METHODS.contains(&n) => Val::Tensor(shape),
            n if BROADCAST_METHODS.contains(&n) => match args.first() {
                Some(Val::Tensor(other)) => match ops::broadcast(&shape, other) {
                    Ok(s) => Val::Tensor(s),
                    Err(message) => {
                        self.error(call, message);
                        Val::Tensor(None)
                    }
                },
                _ => Val::Other,
            },
            "size" | "size1" | "size2" | "size3" | "size4" | "size5" | "size6" => {
                let rank = name.strip_prefix("size").and_then(|r| r.parse::<usize>().ok());
                match (rank, &shape) {
                    (Some(r), Some(dims)) if dims.len() != r => Val::Other,
                    _ => Val::Sizes(shape),
                }
            }
            "dim" => shape.map_or(Val::Other, |d| Val::Int(Dim::lit(d.len() as i64))),
            "reshape" | "view" => self.reshape(call, &shape),
            "flatten" => {
                let axes: Vec<Option<i64>> =
                    args.iter().map(|a| if let Val::Int(d) = a { d.as_lit() } else { None }).collect();
                match axes.as_slice() {
                    [Some(s), Some(e)] => Val::Tensor(ops::flatten(&shape, *s, *e)),
                    _ => Val::Tensor(None),
                }
            }
            _ => Val::Other,
        }
    }

    fn reshape(&mut self, call: &syn::ExprMethodCall, shape: &Shape) -> Val {
        let Some(elements) = call.args.first().and_then(layers::list_elements) else {
            return Val::Tensor(None);
        };
        let target: Vec<Target> = elements
            .iter()
            .map(|e| match self.dim_of(e) {
                d if d.as_lit() == Some(-1) => Target::Infer,
                d if d.as_lit().is_some_and(|n| n < -1) => Target::Size(Dim::Unknown),
                d => Target::Size(d),
            })
            .collect();
        match ops::reshape(shape, &target) {
            Ok(s) => Val::Tensor(s),
            Err(message) => {
                self.error(call, format!("{}: {message}", call.method));
                Val::Tensor(None)
            }
        }
    }

    /// `layer.call(cx, x, …)` and `Embed::attend`.
    fn layer_call(&mut self, call: &syn::ExprMethodCall) -> Val {
        let layer = match &*call.receiver {
            syn::Expr::Path(p) if p.path.get_ident().is_some() => {
                match self.lookup(&p.path.segments[0].ident.to_string()) {
                    Val::Layer(layer) => layer,
                    _ => Layer::Unknown,
                }
            }
            receiver => match self.construction(receiver) {
                Val::Layer(layer) => layer,
                _ => Layer::Unknown,
            },
        };
        let args: Vec<Val> = call.args.iter().skip(1).map(|a| self.eval(a)).collect();
        let shape_of = |i: usize| match args.get(i) {
            Some(Val::Tensor(s)) => s.clone(),
            _ => None,
        };
        let x = shape_of(0);
        let method = call.method.to_string();
        let rule = match (&layer, method.as_str()) {
            (Layer::Dense { features }, "call") => layers::dense(features, &x),
            (Layer::Conv { features, kernel, geometry, transpose }, "call") => {
                layers::conv(features, kernel, geometry, *transpose, &x)
            }
            (Layer::Embed { features, .. }, "call") => Ok(layers::embed(features, &x)),
            (Layer::Embed { num_embeddings, features }, "attend") => {
                layers::attend(num_embeddings, features, &x)
            }
            (Layer::SameShape, "call") => Ok(x),
            (Layer::Attention { out_features }, "call") => Ok(layers::attention(out_features, &x)),
            (Layer::User(path), _) => {
                self.user_calls.push(UserCall {
                    path: path.clone(),
                    method: call.method.clone(),
                    args: (0..args.len()).map(shape_of).collect(),
                    texts: call.args.iter().skip(1).map(source_text).collect(),
                    span: call.span(),
                });
                return Val::Other;
            }
            _ => return Val::Other,
        };
        match rule {
            Ok(shape) => Val::Tensor(shape),
            Err(message) => {
                self.error(call, message);
                Val::Tensor(None)
            }
        }
    }

    fn call(&mut self, call: &syn::ExprCall) -> Val {
        let path = match &*call.func {
            syn::Expr::Path(p) => Some(p.path.clone()),
            _ => None,
        };
        if constructor_path(call).is_some() {
            return self.construction(&syn::Expr::Call(call.clone()));
        }
        let args: Vec<Val> = call.args.iter().map(|a| self.eval(a)).collect();
        let Some(path) = path else { return Val::Other };
        let last = path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default();
        let tensor = |i: usize| match args.get(i) {
            Some(Val::Tensor(s)) => Some(s.clone()),
            _ => None,
        };
        if path.is_ident("Ok") || path.is_ident("Some") {
            return args.into_iter().next().unwrap_or(Val::Other);
        }
        if layers::same_shape_function(&path) {
            return tensor(0).map_or(Val::Other, Val::Tensor);
        }
        if let Some(what) = layers::pooling(&path) {
            let Some(x) = tensor(0) else { return Val::Other };
            let window = call.args.get(1).and_then(layers::int_list);
            let strides = match call.args.get(2) {
                Some(syn::Expr::Path(p)) if p.path.is_ident("None") => Some(None),
                Some(syn::Expr::Call(c)) if matches!(&*c.func, syn::Expr::Path(p) if p.path.is_ident("Some")) => {
                    c.args.first().and_then(layers::int_list).map(Some)
                }
                _ => None,
            };
            let padding = call.args.get(3).map_or(ops::Pad::Unknown, layers::pool_padding);
            let (Some(window), Some(strides)) = (window, strides) else { return Val::Tensor(None) };
            return match layers::pool(&what, &x, &window, strides, padding) {
                Ok(s) => Val::Tensor(s),
                Err(message) => {
                    self.error(call, message);
                    Val::Tensor(None)
                }
            };
        }
        let tensor_path =
            path.segments.len() >= 2 && path.segments[path.segments.len() - 2].ident == "Tensor";
        if tensor_path && ["cat", "concat", "concatenate"].contains(&last.as_str()) {
            return self.concatenate(call);
        }
        Val::Other
    }

    /// `Tensor::cat(&[&a, &b], axis)`.
    fn concatenate(&mut self, call: &syn::ExprCall) -> Val {
        let parts = call.args.first().and_then(layers::list_elements);
        let axis = call.args.get(1).and_then(layers::int_literal);
        let (Some(parts), Some(axis)) = (parts, axis) else { return Val::Tensor(None) };
        let shapes: Vec<Shape> = parts
            .iter()
            .map(|p| match self.eval(p) {
                Val::Tensor(s) => s,
                _ => None,
            })
            .collect();
        match ops::concatenate(&shapes, axis) {
            Ok(s) => Val::Tensor(s),
            Err(message) => {
                self.error(call, message);
                Val::Tensor(None)
            }
        }
    }

    /// A construction bound for later (`let conv = nn::Conv::new(…);`). Its arguments run,
    /// so what they may change is unknown afterwards.
    fn construction(&mut self, expr: &syn::Expr) -> Val {
        self.forget(assigned_names(expr));
        let generics = std::mem::take(&mut self.generics);
        let mut dim = |e: &syn::Expr| self.dim_of(e);
        let layer = layers::construction(expr, &generics, &mut dim).unwrap_or(Layer::Unknown);
        self.generics = generics;
        Val::Layer(layer)
    }
}
