//! The checker's interpreter: the body's walk (`crate::walk`) hands it the method body
//! statement by statement, and it evaluates each, tracking the shape of every tensor binding
//! it can follow, and reports the errors that hold for every value of the declaration's
//! symbols.
//!
//! Only straight-line code is followed. The branches of `if`/`match`, loop bodies and
//! closures may not run (or run with other shapes), so nothing is concluded inside them, and
//! the variables they may change (the walk's record, `walk::Changes`) are unknown afterwards;
//! so are variables mutated in place (a method ending in `_`, a `&mut` borrow). Anything not
//! in the vocabulary gives an unknown shape, from which nothing is concluded.

use super::deferred::{self, Deferred};
use super::dim::{show, Dim, Shape};
use super::layers::{self, Cell, Layer};
use super::layout::{self, Index};
use super::ops::{self, Target};
use super::table::{self, Callee};
use crate::body::{assigned_variable, constructor_path, innermost, is_compound_assign, is_ident};
use crate::walk::Changes;
use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::visit::Visit;

/// What the interpreter knows of a value.
#[derive(Clone)]
pub(crate) enum Val {
    Tensor(Shape),
    /// A tensor whose shape only rustc knows (from a user module's contract): the constant
    /// `deferred::value_name(id)`.
    Deferred(usize),
    /// A tuple (a recurrent carry `(c, h)`, a cell's `(carry, y)`).
    Tuple(Vec<Val>),
    /// An integer: a literal, a size read from a tensor, arithmetic of them.
    Int(Dim),
    /// `self.field` (and arithmetic with it): a size when used as one, else unknown.
    Field(Dim),
    /// A floating-point literal.
    Scalar,
    /// `x.size()`, `x.size4()?`.
    Sizes(Shape),
    /// A layer, and which construction it is (for the table of calls).
    Layer(Layer, Callee),
    Other,
}

pub struct Checker<'a> {
    scope: &'a syn::Ident,
    /// The type parameters in scope (of the impl and the method).
    generics: Vec<String>,
    env: Vec<(String, Val)>,
    errors: Vec<syn::Error>,
    /// What rustc checks: calls of user modules and what the body does with their outputs.
    deferred: Deferred,
    /// The declared output, the method's name and the declaration's text, for the output check.
    output: Option<(Shape, String, String)>,
    /// The fields the declaration names: integers (the guard converts them to `i64`).
    int_fields: Vec<String>,
    /// The module's type, when plain and non-generic: `self.field` calls are followed.
    self_ty: Option<syn::Ident>,
    /// What the parts of the statement being checked may change (the walk's record).
    changes: Changes,
    /// The submodule calls and constructions followed, for the table of `table`.
    table: table::Recorder,
}

/// An argument as the user wrote it, near enough for a message (`&x`, `x.relu()`).
fn source_text(expr: &syn::Expr) -> String {
    quote::ToTokens::to_token_stream(expr)
        .to_string()
        .replace("& ", "&")
        .replace("! ", "!")
        .replace(" . ", ".")
        .replace(" (", "(")
}

/// `field` of `self.field`.
fn self_field(expr: &syn::Expr) -> Option<&syn::Ident> {
    match expr {
        syn::Expr::Field(syn::ExprField { base, member: syn::Member::Named(field), .. }) if matches!(&**base, syn::Expr::Path(p) if p.path.is_ident("self")) => {
            Some(field)
        }
        _ => None,
    }
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
    /// The checker of a declared method whose scope argument is `scope`, its inputs bound to
    /// their declared shapes; `generics` are the type parameters in scope; `self_ty` the
    /// module's type when it is a plain, non-generic one (then rustc checks calls of its
    /// submodule fields against their contracts).
    pub fn new(
        declared: &super::expand::DeclaredMethod<'_>,
        scope: &'a syn::Ident,
        generics: Vec<String>,
        self_ty: Option<&syn::Ident>,
    ) -> Self {
        let declaration = declared.declaration;
        let output =
            declaration.output.as_ref().map(|o| (o.shape(), declared.method.clone(), declaration.text()));
        let int_fields = declaration
            .inputs
            .iter()
            .map(|i| &i.shape)
            .chain(&declaration.output)
            .flat_map(|s| &s.dims)
            .filter_map(|d| match d {
                super::decl::DeclDim::Field(f) => Some(format!("self.{f}")),
                _ => None,
            })
            .collect();
        let env =
            declaration.inputs.iter().map(|i| (i.name.to_string(), Val::Tensor(i.shape.shape()))).collect();
        Checker {
            scope,
            generics,
            env,
            errors: Vec::new(),
            deferred: Deferred::default(),
            output,
            int_fields,
            self_ty: self_ty.cloned(),
            changes: Changes::default(),
            table: table::Recorder::default(),
        }
    }

    /// Checks the next statement of the body (`last`: its tail), with the walk's record of
    /// what its parts may change.
    pub fn statement(&mut self, stmt: &syn::Stmt, last: bool, changes: Changes) {
        self.changes = changes;
        self.stmt(stmt, last, true);
    }

    /// The errors, and the `const` items by which rustc follows the user modules the body
    /// calls (statements for the start of its body).
    pub fn finish(self) -> super::Checked {
        super::Checked { errors: self.errors, call_checks: self.deferred.items, table: self.table }
    }

    fn bind(&mut self, name: String, val: Val) {
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

    fn forget(&mut self, names: impl IntoIterator<Item = String>) {
        for name in names {
            self.assign(&name, Val::Other);
        }
    }

    /// What `node`, code the checker does not follow, may change is unknown afterwards.
    fn forget_within<T>(&mut self, node: &T) {
        self.forget(self.changes.within(node));
    }

    fn error(&mut self, node: &dyn quote::ToTokens, message: String) {
        self.errors.push(syn::Error::new_spanned(node, message));
    }

    /// Checks a body: its statements in order, its tail against the declared output.
    /// A block nested in a statement: its statements in order, its value its tail's.
    fn block(&mut self, block: &syn::Block) -> Val {
        let depth = self.env.len();
        let mut value = Val::Other;
        for (i, stmt) in block.stmts.iter().enumerate() {
            value = self.stmt(stmt, i + 1 == block.stmts.len(), false);
        }
        self.env.truncate(depth);
        value
    }

    /// A statement (`last`: the block's tail, checked against the declared output when the
    /// block is the body) and its value.
    fn stmt(&mut self, stmt: &syn::Stmt, last: bool, is_body: bool) -> Val {
        match stmt {
            syn::Stmt::Local(local) => {
                self.local(local);
                Val::Other
            }
            syn::Stmt::Expr(expr, semi) => {
                let v = self.eval(expr);
                if !last || semi.is_some() {
                    return Val::Other;
                }
                if is_body {
                    self.check_output(expr, &v);
                }
                v
            }
            syn::Stmt::Macro(m) => {
                self.forget_within(&m.mac);
                Val::Other
            }
            syn::Stmt::Item(_) => Val::Other,
        }
    }

    fn check_output(&mut self, expr: &syn::Expr, value: &Val) {
        let Some((declared, method, text)) = &self.output else { return };
        if let (Val::Deferred(_), Some(dims)) = (value, declared) {
            let got = const_value(value).expect("a tensor");
            let dims = dims.iter().map(deferred::dim);
            let check = quote!(::flax::__private::shape::check_output(#method, #text, &[#(#dims),*], #got));
            self.deferred.check(expr.span(), check);
            return;
        }
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
                    self.forget_within(&**diverge);
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
            (syn::Pat::Tuple(t), Val::Tuple(vals)) if t.elems.len() == vals.len() => {
                for (p, v) in t.elems.iter().zip(vals) {
                    self.bind_pattern(p, v);
                }
            }
            (syn::Pat::Reference(r), value) => self.bind_pattern(&r.pat, value),
            (pat, _) => {
                for name in pattern_names(pat) {
                    self.bind(name, Val::Other);
                }
            }
        }
    }

    /// A size argument (`Dense::new(self.features)`, a reshape target).
    fn dim_of(&mut self, expr: &syn::Expr) -> Dim {
        match self.eval(expr) {
            Val::Int(d) | Val::Field(d) => d,
            _ => Dim::Unknown,
        }
    }

    fn eval(&mut self, expr: &syn::Expr) -> Val {
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
                    let field = format!("self.{name}");
                    if self.int_fields.contains(&field) {
                        Val::Int(Dim::atom(field))
                    } else {
                        Val::Field(Dim::atom(field))
                    }
                }
                (base, syn::Member::Unnamed(i)) => match self.eval(base) {
                    Val::Tuple(mut vals) if (i.index as usize) < vals.len() => {
                        vals.swap_remove(i.index as usize)
                    }
                    _ => Val::Other,
                },
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
                    self.forget_within(expr);
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
                    _ => self.forget_within(expr),
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
            syn::Expr::Macro(m) if m.mac.path.segments.last().is_some_and(|s| s.ident == "sequential") => {
                self.construction(expr)
            }
            syn::Expr::Block(b) if b.label.is_none() => self.block(&b.block),
            syn::Expr::Unsafe(u) => self.block(&u.block),
            syn::Expr::MethodCall(m) => self.method_call(m),
            syn::Expr::Call(c) => self.call(c),
            syn::Expr::Return(r) => {
                if let Some(e) = &r.expr {
                    let v = self.eval(e);
                    self.check_output(e, &v);
                }
                Val::Other
            }
            syn::Expr::Tuple(t) => Val::Tuple(t.elems.iter().map(|e| self.eval(e)).collect()),
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
                self.forget_within(expr);
                Val::Other
            }
            syn::Expr::Match(m) => {
                self.eval(&m.expr);
                self.forget_within(expr);
                Val::Other
            }
            _ => {
                self.forget_within(expr);
                Val::Other
            }
        }
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> Val {
        use syn::BinOp::*;
        let left = self.eval(&b.left);
        if matches!(b.op, And(_) | Or(_)) {
            // The right side may not run.
            self.forget_within(&*b.right);
            return Val::Other;
        }
        let right = self.eval(&b.right);
        let arithmetic = matches!(b.op, Add(_) | Sub(_) | Mul(_) | Div(_) | Rem(_));
        let compound = matches!(b.op, AddAssign(_) | SubAssign(_) | MulAssign(_) | DivAssign(_));
        if !arithmetic && !compound {
            if is_compound_assign(&b.op) {
                self.forget(assigned_variable(&b.left));
            }
            return Val::Other;
        }
        let result = match (&left, &right) {
            (Val::Tensor(_) | Val::Deferred(_), Val::Tensor(_) | Val::Deferred(_)) => {
                self.broadcast(b, &left, &right)
            }
            (t @ (Val::Tensor(_) | Val::Deferred(_)), Val::Int(_) | Val::Scalar)
            | (Val::Int(_) | Val::Scalar, t @ (Val::Tensor(_) | Val::Deferred(_))) => t.clone(),
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
                self.forget(assigned_variable(&b.left));
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
            self.forget(assigned_variable(&call.receiver));
            return Val::Other;
        }
        let name = method.strip_prefix("f_").unwrap_or(&method);
        if let Val::Deferred(_) = receiver {
            return self.deferred_method(call, name, receiver, &args);
        }
        let Val::Tensor(shape) = receiver else {
            return match (receiver, method.as_str()) {
                (v @ (Val::Int(_) | Val::Field(_)), "into" | "clone") => v,
                _ => Val::Other,
            };
        };
        if let Some(rule) = self.layout_method(call, name, &shape, &args) {
            return self.ruled(call, rule);
        }
        match name {
            n if SAME_SHAPE_METHODS.contains(&n) => Val::Tensor(shape),
            n if BROADCAST_METHODS.contains(&n) => match args.first() {
                Some(other @ (Val::Tensor(_) | Val::Deferred(_))) => {
                    self.broadcast(call, &Val::Tensor(shape), other)
                }
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
        let (layer, callee) = match &*call.receiver {
            syn::Expr::Path(p) if p.path.get_ident().is_some() => {
                match self.lookup(&p.path.segments[0].ident.to_string()) {
                    Val::Layer(layer, callee) => (layer, callee),
                    _ if p.path.is_ident("self") => (Layer::Unknown, Callee::Own),
                    _ => (Layer::Unknown, Callee::Unknown),
                }
            }
            syn::Expr::Field(syn::ExprField { base, member: syn::Member::Named(field), .. }) if matches!(&**base, syn::Expr::Path(p) if p.path.is_ident("self")) => {
                (Layer::Field(field.clone()), Callee::Field(field.to_string()))
            }
            syn::Expr::Index(i) if self_field(&i.expr).is_some() => {
                self.eval(&i.index);
                (Layer::Element(self_field(&i.expr).expect("matched").clone()), Callee::Unknown)
            }
            receiver => match self.construction(receiver) {
                Val::Layer(layer, callee) => (layer, callee),
                _ => (Layer::Unknown, Callee::Unknown),
            },
        };
        let args: Vec<Val> = call.args.iter().skip(1).map(|a| self.eval(a)).collect();
        let texts: Vec<String> = call.args.iter().skip(1).map(source_text).collect();
        let recorded = args.iter().cloned().zip(texts.iter().cloned()).collect();
        let output = self.apply_layer(call, &layer, &call.method.to_string(), args, &texts);
        self.table.called(callee, &call.method, recorded, &output);
        output
    }

    /// The value of `layer.method(cx, args…)` (`call` spans the errors).
    fn apply_layer(
        &mut self,
        call: &syn::ExprMethodCall,
        layer: &Layer,
        method: &str,
        mut args: Vec<Val>,
        texts: &[String],
    ) -> Val {
        if let Layer::User(path) = layer {
            let callee = format!("{}::{method}", quote!(#path).to_string().replace(' ', ""));
            return self.user_call(call, quote!(#path::__FLAX_SHAPE), &callee, method, &args, texts);
        }
        let field = match layer {
            Layer::Field(field) => Some((field.to_string(), format!("self.{field}.{method}"))),
            Layer::Element(field) => Some((format!("{field}[]"), format!("self.{field}[..].{method}"))),
            _ => None,
        };
        if let Some((name, callee)) = field {
            let Some(ty) = &self.self_ty else { return Val::Other };
            let contracts = quote!(::flax::__private::shape::field(#ty::__FLAX_FIELDS, #name));
            return self.user_call(call, contracts, &callee, method, &args, texts);
        }
        let first = if args.is_empty() { Val::Other } else { args.remove(0) };
        if let Val::Deferred(_) = first {
            return self.deferred_layer(call, layer, method, first);
        }
        let x = match &first {
            Val::Tensor(s) => s.clone(),
            _ => None,
        };
        let rule = match (layer, method) {
            (Layer::Dense { features }, "call") => layers::dense(features, &x),
            (Layer::DenseGeneral { features, axis, batch_dims }, "call") => {
                layers::dense_general(features, axis, batch_dims, &x)
            }
            (Layer::Conv { features, kernel, geometry, transpose }, "call") => {
                layers::conv(features, kernel, geometry, *transpose, &x)
            }
            (Layer::Embed { features, .. }, "call") => Ok(layers::embed(features, &x)),
            (Layer::Embed { num_embeddings, features }, "attend") => {
                layers::attend(num_embeddings, features, &x)
            }
            (Layer::SameShape, "call") => Ok(x),
            (Layer::Attention { out_features }, "call") => Ok(layers::attention(out_features, &x)),
            (Layer::Cell(cell), "call") => return self.cell_call(call, *cell, &first, args.first()),
            (Layer::Rnn { cell, size, time_major }, "call") => {
                return match layers::rnn(size, *time_major, &x) {
                    Ok((carry, outputs)) => {
                        let carry = match cell {
                            Some(Cell::Lstm) => {
                                Val::Tuple(vec![Val::Tensor(carry.clone()), Val::Tensor(carry)])
                            }
                            Some(Cell::Gru) => Val::Tensor(carry),
                            None => Val::Other,
                        };
                        let outputs = if cell.is_some() { outputs } else { None };
                        Val::Tuple(vec![carry, Val::Tensor(outputs)])
                    }
                    Err(message) => {
                        self.error(call, message);
                        Val::Other
                    }
                };
            }
            (Layer::Sequential(parts), "call") => {
                let mut value = first;
                for part in parts {
                    value = match value {
                        v @ (Val::Tensor(_) | Val::Deferred(_)) => {
                            self.apply_layer(call, part, "call", vec![v], texts)
                        }
                        _ => return Val::Tensor(None),
                    };
                }
                return value;
            }
            _ => return Val::Other,
        };
        self.ruled(call, rule)
    }

    /// A call of a user module (`callee`, whose contracts are the compile-time value
    /// `contracts`): rustc checks the arguments against its contract, and its declared output
    /// is the value.
    fn user_call(
        &mut self,
        call: &syn::ExprMethodCall,
        contracts: TokenStream,
        callee: &str,
        method: &str,
        args: &[Val],
        texts: &[String],
    ) -> Val {
        let given: Vec<TokenStream> =
            args.iter().map(|a| const_value(a).unwrap_or_else(|| deferred::known(&None))).collect();
        let shown: Vec<String> = args
            .iter()
            .map(|a| match a {
                Val::Tensor(s @ Some(_)) => show(s),
                _ => String::new(),
            })
            .collect();
        self.deferred.check(
            call.span(),
            quote!(::flax::__private::shape::check_call(#contracts, #method, #callee, &[#(#texts),*], &[#(#shown),*], &[#(#given),*])),
        );
        let id = self
            .deferred
            .value(quote!(::flax::__private::shape::output(#contracts, #method, &[#(#given),*])));
        Val::Deferred(id)
    }

    /// A layer applied to a tensor whose shape only rustc knows.
    fn deferred_layer(&mut self, call: &syn::ExprMethodCall, layer: &Layer, method: &str, x: Val) -> Val {
        let value = const_value(&x).expect("a tensor");
        let last = match (layer, method) {
            (Layer::SameShape, "call") | (Layer::Attention { out_features: None }, "call") => return x,
            (Layer::Dense { features }, "call")
            | (Layer::Attention { out_features: Some(features) }, "call") => features.clone(),
            (Layer::Sequential(parts), "call") => {
                let mut value = x;
                for part in parts {
                    value = self.apply_layer(call, part, "call", vec![value], &[]);
                }
                return value;
            }
            (Layer::Conv { features, kernel: Some(kernel), geometry, transpose: false }, "call") => {
                let spec = layers::window_spec(kernel, geometry.as_ref());
                return self.deferred_window(call, "nn::Conv", &x, spec, Some(features));
            }
            _ => return Val::Tensor(None),
        };
        let last = deferred::dim(&last);
        Val::Deferred(self.deferred.value(quote!(::flax::__private::shape::with_last(#value, #last))))
    }

    /// A window op (`what`) on a tensor whose shape only rustc knows: its rank and `VALID`
    /// fit checked, its output computed by rustc (`features`: the new last dimension).
    fn deferred_window(
        &mut self,
        node: &dyn quote::ToTokens,
        what: &str,
        x: &Val,
        (extents, strides, pad): (Vec<i64>, Vec<i64>, ops::Pad),
        features: Option<&Dim>,
    ) -> Val {
        let x = const_value(x).expect("a tensor");
        let pad = match pad {
            ops::Pad::Same => quote!(::flax::__private::shape::WindowPad::Same),
            ops::Pad::Valid => quote!(::flax::__private::shape::WindowPad::Valid),
            _ => quote!(::flax::__private::shape::WindowPad::Unknown),
        };
        let features = match features {
            Some(f) => {
                let f = deferred::dim(f);
                quote!(::core::option::Option::Some(#f))
            }
            None => quote!(::core::option::Option::None),
        };
        let span = syn::spanned::Spanned::span(&quote::ToTokens::to_token_stream(node));
        let check = quote!(::flax::__private::shape::check_window(#what, #x, &[#(#extents),*], #pad));
        self.deferred.check(span, check);
        let value =
            quote!(::flax::__private::shape::window(#x, &[#(#extents),*], &[#(#strides),*], #pad, #features));
        Val::Deferred(self.deferred.value(value))
    }

    /// One step of an LSTM (`((c, h), h)`) or GRU (`(h, h)`) cell.
    fn cell_call(&mut self, call: &syn::ExprMethodCall, cell: Cell, carry: &Val, x: Option<&Val>) -> Val {
        let h = match (cell, carry) {
            (Cell::Lstm, Val::Tuple(parts)) if parts.len() == 2 => &parts[1],
            (Cell::Gru, h) => h,
            _ => &Val::Other,
        };
        let shape = match (h, x) {
            (Val::Tensor(h), Some(Val::Tensor(x))) => match layers::cell_step(h, x) {
                Ok(s) => s,
                Err(message) => {
                    self.error(call, message);
                    None
                }
            },
            _ => None,
        };
        let h = Val::Tensor(shape);
        let carry = match cell {
            Cell::Lstm => Val::Tuple(vec![h.clone(), h.clone()]),
            Cell::Gru => h.clone(),
        };
        Val::Tuple(vec![carry, h])
    }

    /// A rule's result, its error reported at `node`.
    fn ruled(&mut self, node: &dyn quote::ToTokens, rule: layers::Rule) -> Val {
        match rule {
            Ok(shape) => Val::Tensor(shape),
            Err(message) => {
                self.errors.push(syn::Error::new_spanned(node, message));
                Val::Tensor(None)
            }
        }
    }

    /// Broadcasting two tensors (`+`, `add`, …): by the macro when it knows both shapes, else
    /// by rustc.
    fn broadcast(&mut self, node: &dyn quote::ToTokens, a: &Val, b: &Val) -> Val {
        match (a, b) {
            (Val::Tensor(x), Val::Tensor(y)) => self.ruled(node, ops::broadcast(x, y)),
            _ => {
                let (x, y) = (const_value(a).expect("a tensor"), const_value(b).expect("a tensor"));
                let span = syn::spanned::Spanned::span(&quote::ToTokens::to_token_stream(node));
                self.deferred.check(span, quote!(::flax::__private::shape::check_broadcast(#x, #y)));
                Val::Deferred(self.deferred.value(quote!(::flax::__private::shape::broadcast(#x, #y))))
            }
        }
    }

    /// A tensor method on a tensor whose shape only rustc knows.
    fn deferred_method(
        &mut self,
        call: &syn::ExprMethodCall,
        name: &str,
        receiver: Val,
        args: &[Val],
    ) -> Val {
        let x = const_value(&receiver).expect("a tensor");
        let lit = |i: usize| lit_arg(args, i);
        let rule = match name {
            n if SAME_SHAPE_METHODS.contains(&n) => return receiver,
            n if BROADCAST_METHODS.contains(&n) => {
                return match args.first() {
                    Some(other @ (Val::Tensor(_) | Val::Deferred(_))) => {
                        self.broadcast(call, &receiver, other)
                    }
                    _ => Val::Other,
                };
            }
            "flatten" => match (lit(0), lit(1)) {
                (Some(s), Some(e)) => quote!(::flax::__private::shape::flatten(#x, #s, #e)),
                _ => return Val::Tensor(None),
            },
            "permute" => match call.args.first().and_then(layers::int_list) {
                Some(axes) => quote!(::flax::__private::shape::permute(#x, &[#(#axes),*])),
                None => return Val::Tensor(None),
            },
            "transpose" | "swapaxes" | "swapdims" => match (lit(0), lit(1)) {
                (Some(a), Some(b)) => quote!(::flax::__private::shape::transpose(#x, #a, #b)),
                _ => return Val::Tensor(None),
            },
            n => match reduction(call, n) {
                Some((Some(Some(axes)), Some(keepdim))) => {
                    quote!(::flax::__private::shape::reduce(#x, &[#(#axes),*], #keepdim))
                }
                _ => return Val::Tensor(None),
            },
        };
        Val::Deferred(self.deferred.value(rule))
    }

    /// The rules of `layout` for a tensor method on a known shape, if `name` is one of them.
    fn layout_method(
        &mut self,
        call: &syn::ExprMethodCall,
        name: &str,
        shape: &Shape,
        args: &[Val],
    ) -> Option<layers::Rule> {
        let lit = |i: usize| lit_arg(args, i);
        let unknown = Ok(None);
        Some(match name {
            "permute" => match call.args.first().and_then(layers::int_list) {
                Some(axes) => layout::permute(shape, &axes),
                None => unknown,
            },
            "transpose" | "swapaxes" | "swapdims" => match (lit(0), lit(1)) {
                (Some(a), Some(b)) => layout::transpose(shape, a, b),
                _ => unknown,
            },
            "t" | "tr" => match shape {
                Some(dims) if dims.len() == 2 => layout::transpose(shape, 0, 1),
                Some(dims) if dims.len() < 2 => Ok(shape.clone()),
                _ => unknown,
            },
            "matmul" | "mm" | "bmm" => match args.first() {
                Some(Val::Tensor(other)) => layout::matmul(shape, other),
                _ => unknown,
            },
            "narrow" => match (lit(0), &args.get(2)) {
                (Some(axis), Some(Val::Int(length))) => layout::narrow(shape, axis, lit(1), length),
                _ => unknown,
            },
            "slice" => {
                match (lit(0), optional_literal(call.args.get(1)), optional_literal(call.args.get(2)), lit(3))
                {
                    (Some(axis), Some(start), Some(end), Some(step)) => {
                        layout::slice(shape, axis, start, end, step)
                    }
                    _ => unknown,
                }
            }
            "select" => match lit(0) {
                Some(axis) => layout::select(shape, axis, lit(1)),
                None => unknown,
            },
            "i" => match call.args.first() {
                Some(syn::Expr::Tuple(t)) => {
                    layout::index(shape, &t.elems.iter().map(index_item).collect::<Vec<_>>())
                }
                Some(item) => layout::index(shape, &[index_item(item)]),
                None => unknown,
            },
            "unsqueeze" => match lit(0) {
                Some(axis) => layout::unsqueeze(shape, axis),
                None => unknown,
            },
            "squeeze_dim" => match lit(0) {
                Some(axis) => layout::squeeze_dim(shape, axis),
                None => unknown,
            },
            // Reductions to a scalar: `sum(kind)`, `max()`.
            "mean" | "sum" | "prod" if call.args.len() == 1 => Ok(shape.as_ref().map(|_| Vec::new())),
            "max" | "min" | "norm" if call.args.is_empty() => Ok(shape.as_ref().map(|_| Vec::new())),
            n => match reduction(call, n)? {
                (Some(axes), Some(keepdim)) => layout::reduce(n, shape, axes.as_deref(), keepdim),
                _ => unknown,
            },
        })
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
        if let Some((what, with)) = layers::pooling(&path) {
            let window = call.args.get(1).and_then(layers::int_list);
            let options = match with {
                true => call.args.get(2).and_then(layers::pool_options),
                false => Some((None, ops::Pad::Valid)),
            };
            if let (Some(x @ Val::Deferred(_)), Some(window), Some((strides, padding))) =
                (args.first(), &window, options.clone())
            {
                let geometry = layers::pool_geometry(window.len(), strides, padding);
                let spec = layers::window_spec(window, Some(&geometry));
                return self.deferred_window(call, &what, &x.clone(), spec, None);
            }
            let Some(x) = tensor(0) else { return Val::Other };
            let (Some(window), Some((strides, padding))) = (window, options) else {
                return Val::Tensor(None);
            };
            return match layers::pool(&what, &x, &window, strides, padding) {
                Ok(s) => Val::Tensor(s),
                Err(message) => {
                    self.error(call, message);
                    Val::Tensor(None)
                }
            };
        }
        let owner = path.segments.len().checked_sub(2).map(|i| path.segments[i].ident.to_string());
        let tensor_path = owner.as_deref() == Some("Tensor");
        if tensor_path && ["cat", "concat", "concatenate", "stack"].contains(&last.as_str()) {
            return self.concatenate(call, last == "stack");
        }
        let cell = owner.as_deref().and_then(Cell::named).filter(|_| {
            let n = path.segments.len();
            last == "initialize_carry" && (n == 2 || path.segments[n - 3].ident == "nn")
        });
        if let Some(cell) = cell {
            return self.initial_carry(call, cell);
        }
        Val::Other
    }

    /// `LSTMCell::initialize_carry(rng, &[batch…], size, init, device)`: `(c, h)` (`h` for a
    /// `GRUCell`) of shape `[batch…, size]`.
    fn initial_carry(&mut self, call: &syn::ExprCall, cell: Cell) -> Val {
        let batch = call.args.get(1).and_then(layers::list_elements);
        let shape = match (batch, call.args.get(2)) {
            (Some(batch), Some(size)) => {
                let mut dims: Vec<Dim> = batch.iter().map(|b| self.dim_of(b)).collect();
                dims.push(self.dim_of(size));
                Some(dims)
            }
            _ => None,
        };
        match cell {
            Cell::Lstm => Val::Tuple(vec![Val::Tensor(shape.clone()), Val::Tensor(shape)]),
            Cell::Gru => Val::Tensor(shape),
        }
    }

    /// `Tensor::cat(&[&a, &b], axis)` (`Tensor::stack` when `stack`).
    fn concatenate(&mut self, call: &syn::ExprCall, stack: bool) -> Val {
        let parts = call.args.first().and_then(layers::list_elements);
        let axis = call.args.get(1).and_then(layers::int_literal);
        let (Some(parts), Some(axis)) = (parts, axis) else { return Val::Tensor(None) };
        let vals: Vec<Val> = parts.iter().map(|p| self.eval(p)).collect();
        if vals.iter().any(|v| matches!(v, Val::Deferred(_))) && !stack {
            let parts: Vec<TokenStream> =
                vals.iter().map(|v| const_value(v).unwrap_or_else(|| deferred::known(&None))).collect();
            let check = quote!(::flax::__private::shape::check_concatenate(&[#(#parts),*], #axis));
            self.deferred.check(call.span(), check);
            return Val::Deferred(
                self.deferred.value(quote!(::flax::__private::shape::concatenate(&[#(#parts),*], #axis))),
            );
        }
        let shapes: Vec<Shape> = vals
            .into_iter()
            .map(|v| match v {
                Val::Tensor(s) => s,
                _ => None,
            })
            .collect();
        let rule = if stack { layout::stack(&shapes, axis) } else { ops::concatenate(&shapes, axis) };
        self.ruled(call, rule)
    }

    /// A construction bound for later (`let conv = nn::Conv::new(…);`). Its arguments run,
    /// so what they may change is unknown afterwards.
    fn construction(&mut self, expr: &syn::Expr) -> Val {
        self.forget_within(expr);
        match innermost(expr) {
            syn::Expr::Call(c) => self.forget_within(c),
            syn::Expr::Macro(m) => self.forget_within(&m.mac),
            _ => {}
        }
        let generics = std::mem::take(&mut self.generics);
        let mut size = |e: &syn::Expr| match self.eval(e) {
            Val::Int(d) => (d, true),
            Val::Field(d) => (d, false),
            _ => (Dim::Unknown, false),
        };
        let layer = layers::construction(expr, &generics, &mut size).unwrap_or(Layer::Unknown);
        self.generics = generics;
        Val::Layer(layer, self.table.constructed(expr))
    }
}

/// The compile-time value of a tensor (`None`: not a tensor).
fn const_value(v: &Val) -> Option<TokenStream> {
    match v {
        Val::Tensor(s) => Some(deferred::known(s)),
        Val::Deferred(id) => {
            let name = deferred::value_name(*id);
            Some(quote!(#name))
        }
        _ => None,
    }
}

/// Argument `i` when it is an integer literal (after evaluation: `-1`, `2 - 1`).
fn lit_arg(args: &[Val], i: usize) -> Option<i64> {
    match args.get(i) {
        Some(Val::Int(d)) => d.as_lit(),
        _ => None,
    }
}

/// `Some(n)`/`n` → `Some(Some(n))`, `None` → `Some(None)`, anything else `None`.
fn optional_literal(expr: Option<&syn::Expr>) -> Option<Option<i64>> {
    let expr = expr?;
    if matches!(expr, syn::Expr::Path(p) if p.path.is_ident("None")) {
        return Some(None);
    }
    match expr {
        syn::Expr::Call(c) if matches!(&*c.func, syn::Expr::Path(p) if p.path.is_ident("Some")) => {
            c.args.first().and_then(layers::int_literal).map(Some)
        }
        other => layers::int_literal(other).map(Some),
    }
}

/// One item of `x.i((…))`.
fn index_item(expr: &syn::Expr) -> Index {
    match expr {
        syn::Expr::Range(r) if matches!(r.limits, syn::RangeLimits::HalfOpen(_)) => {
            let bound = |b: &Option<Box<syn::Expr>>| match b {
                None => Some(None),
                Some(e) => layers::int_literal(e).map(Some),
            };
            match (bound(&r.start), bound(&r.end)) {
                (Some(start), Some(end)) => Index::Range { start, end },
                _ => Index::Unknown,
            }
        }
        other => match layers::int_literal(other) {
            Some(n) => Index::At(Some(n)),
            None => Index::Unknown,
        },
    }
}

/// The axes of a reduction argument: `Some(None)` for all of them (`None`, `[]`), `None`
/// when not literal. Accepts `1`, `[1]`, `&[1]`, `vec![1]`, `[1].as_slice()`, `&[1][..]`,
/// `Some(…)`.
fn reduction_axes(expr: &syn::Expr) -> Option<Option<Vec<i64>>> {
    match expr {
        syn::Expr::Path(p) if p.path.is_ident("None") => Some(None),
        syn::Expr::Call(c) if matches!(&*c.func, syn::Expr::Path(p) if p.path.is_ident("Some")) => {
            reduction_axes(c.args.first()?)
        }
        syn::Expr::MethodCall(m) if m.method == "as_slice" || m.method == "to_vec" => {
            reduction_axes(&m.receiver)
        }
        syn::Expr::Index(i) if matches!(&*i.index, syn::Expr::Range(r) if r.start.is_none() && r.end.is_none()) => {
            reduction_axes(&i.expr)
        }
        syn::Expr::Reference(r) => reduction_axes(&r.expr),
        other => match layers::int_literal(other) {
            Some(n) => Some(Some(vec![n])),
            None => {
                let axes = layers::int_list(other)?;
                Some(if axes.is_empty() { None } else { Some(axes) })
            }
        },
    }
}

/// A reduction's axes (`reduction_axes`) and `keepdim`, each `None` when not literal.
type Reduction = (Option<Option<Vec<i64>>>, Option<bool>);

/// A reduction over axes (the tch names), or `None` when `name` is not one.
fn reduction(call: &syn::ExprMethodCall, name: &str) -> Option<Reduction> {
    let keepdim_at = match name {
        "mean_dim" | "sum_dim_intlist" | "nansum" | "amax" | "amin" | "logsumexp" | "argmax" | "argmin" => 1,
        "std_dim" | "var_dim" => 2,
        _ => return None,
    };
    let keepdim = match call.args.get(keepdim_at) {
        Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Bool(b), .. })) => Some(b.value),
        _ => None,
    };
    Some((call.args.first().and_then(reduction_axes), keepdim))
}
