//! The one walk of a module method's body, shared by the passes that read it: what the
//! body names, declares and calls through its scope (`ScopeUses`) for the typed params view
//! (`params`), the auto-naming it must agree with and the checks of `check`
//! (`NameInUseError`, `AssignSubModuleError`); and, for a `#[shape]`-declared method, the
//! shape pass, which the walk drives statement by statement (`shape::Checker::statement`),
//! handing it what each part of the statement may change (`Changes`), so that the checker
//! forgets those variables after the code it does not follow.
//!
//! The walk is syntactic. A submodule is a `Type::new(…)` (possibly followed by builder calls)
//! that is called with the scope as first argument, directly or through a `let` binding, or a
//! `#[submodule]` field. Its Flax name comes from a literal `.name("…")` or from the per-type
//! construction count; a construction under `if`/`match`/closure gives an `Option` field, one
//! inside a loop a `Vec` of `Type_k` from the current count `n` on, in a field `type_from_n`
//! (later auto-names of that type are no longer known). Anything else — computed names, params declared in loops — is
//! reached through the view's raw `tree`.
//!
//! Modules constructed in the arguments of a submodule's construction (`nn::RNN::new(
//! nn::LSTMCell::new(), …)`) take an auto-name of this module as at run time (Rust evaluates
//! the arguments first), so later names stay right, but get no field: the macro cannot tell a
//! module from any other `Type::new(…)` there. Generic modules (the library's `RNN` and
//! `Bidirectional`, or a path with generic arguments) get no field either: their params type
//! cannot be named without the generic arguments; nor does a module given modules in its
//! constructor's arguments (a module with a parent keeps its place in the tree, so the
//! holder's own view may not match). All are reached through `tree`.
//!
//! Literal names are recorded on the body's straight-line path only (outside branches,
//! loops, closures and the macro bodies the walk parses): names there may legitimately repeat.

use crate::body::{
    assigned_variable, constructor_path, innermost, is_compound_assign, is_ident, string_literal,
};
use crate::shape::Checker;
use proc_macro2::Span;
use std::ops::Range;
use std::rc::Rc;
use syn::punctuated::Punctuated;
use syn::visit::Visit;

/// Methods of `Scope` whose first argument is a name in the module's namespace (the first
/// three declare params).
const NAMING_METHODS: [&str; 4] = ["param", "param_with_dtype", "param_fn", "perturb"];

/// What a method body does through its scope, in the order it is written.
#[derive(Default)]
pub struct ScopeUses {
    /// Literal names claimed in the module's namespace on the body's straight-line path
    /// (`cx.param("w", …)`, `cx.variable(col, "v", …)`, `cx.perturb("p", …)`, `.name("x")`),
    /// each at its literal.
    pub names: Vec<(String, Span)>,
    /// Params and inline submodules declared anywhere in the body (`AssignSubModuleError`
    /// outside a compact method).
    pub declarations: Vec<Declared>,
    /// The params and submodules a typed view can name, in declaration order.
    pub entries: Vec<Entry>,
}

/// A declaration through the scope.
pub enum Declared {
    /// `cx.param(…)` (also `param_with_dtype`, `param_fn`): the method name's span.
    Param(Span),
    /// `Type::new(…)….method(cx, …)`: the constructor's path, `Type::new`.
    Submodule(syn::Path),
}

/// How many of an entry a view holds.
#[derive(Clone, Copy, PartialEq)]
pub enum Arity {
    One,
    Optional,
    Many,
}

pub enum Kind {
    Param,
    Submodule(syn::Path),
}

pub struct Entry {
    pub field: syn::Ident,
    pub key: Key,
    pub kind: Kind,
    pub arity: Arity,
}

pub enum Key {
    Name(String),
    /// Submodules `Type_{start}`, `Type_{start+1}`, … made in a loop.
    From {
        type_name: String,
        start: u32,
    },
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

/// A construction bound with `let`, waiting to be called.
struct Pending {
    binding: syn::Ident,
    path: syn::Path,
    name: Option<Option<String>>,
    arity: Arity,
    index: Option<u32>,
    /// Whether modules were handed to it in its constructor's arguments.
    holds_modules: bool,
}

struct Walker<'a> {
    scope: &'a syn::Ident,
    /// How many branches, loops and closures enclose the expression being walked (whole:
    /// an `if`'s condition included), for the straight-line names.
    conditional: usize,
    /// How many macro bodies parsed by the walk enclose the expression.
    in_macro: usize,
    uses: ScopeUses,
    depth_cond: usize,
    depth_loop: usize,
    counters: Vec<(String, Option<u32>)>,
    pending: Vec<Pending>,
    /// How many `Sequential` constructions enclose the expression being scanned: modules
    /// constructed in their layers belong to this module (Flax's rule), so they take auto-names
    /// here although they are never called with the scope.
    in_sequential: usize,
    /// How many submodule constructions' arguments enclose the expression being scanned:
    /// modules constructed there take auto-names of this module (they keep it as parent).
    in_module_args: usize,
    /// How many modules were found in constructor arguments so far (constructed there, or
    /// bound with `let` and handed over).
    module_args_seen: usize,
    /// Constructions whose arguments were already scanned (by address).
    done: Vec<usize>,
    /// Constructions given a name in a `Sequential`'s layers (by address): no auto-name.
    named: Vec<usize>,
    /// Macro bodies parsed as expressions, kept alive while addresses of their nodes are held.
    parsed: Vec<Rc<Punctuated<syn::Expr, syn::Token![,]>>>,
    /// Set once the body calls code that may construct modules the scan cannot see (a helper
    /// method of `self`, a local function): from there on no auto-name is known.
    all_unknown: bool,
    /// How many lifted transforms' arguments enclose the expression (`nn::scan(Block::new())`):
    /// the module there gives its auto-name back to the transform at run time.
    in_lift_args: usize,
    /// What the statement being walked may change.
    changes: Changes,
}

/// What one statement may change: the variables it assigns, mutates in place (a method ending
/// in `_`), borrows mutably or hands to a macro, in walk order, and which of them each node
/// containing some does.
#[derive(Default)]
pub struct Changes {
    variables: Vec<String>,
    /// Node address → the range of `variables` its walk recorded.
    nodes: Vec<(usize, Range<usize>)>,
}

impl Changes {
    /// The variables `node` (an expression, a macro, a constructor call of the statement) may
    /// change.
    pub fn within<T>(&self, node: &T) -> Vec<String> {
        let ranges = self.nodes.iter().filter(|(a, _)| *a == address(node));
        ranges.flat_map(|(_, r)| self.variables[r.clone()].iter().cloned()).collect()
    }
}

/// Walks `body`, whose scope argument is `scope`, once; with `shapes`, the shape checker of a
/// declared method, it hands each statement over to it after walking it.
pub fn walk(body: &syn::Block, scope: &syn::Ident, mut shapes: Option<&mut Checker<'_>>) -> ScopeUses {
    let mut s = Walker::new(scope);
    for (i, stmt) in body.stmts.iter().enumerate() {
        s.visit_stmt(stmt);
        let changes = std::mem::take(&mut s.changes);
        if let Some(checker) = shapes.as_deref_mut() {
            checker.statement(stmt, i + 1 == body.stmts.len(), changes);
        }
    }
    s.uses
}

impl<'a> Walker<'a> {
    fn new(scope: &'a syn::Ident) -> Self {
        Walker {
            scope,
            conditional: 0,
            in_macro: 0,
            uses: ScopeUses::default(),
            depth_cond: 0,
            depth_loop: 0,
            counters: Vec::new(),
            pending: Vec::new(),
            in_sequential: 0,
            in_module_args: 0,
            module_args_seen: 0,
            done: Vec::new(),
            named: Vec::new(),
            parsed: Vec::new(),
            all_unknown: false,
            in_lift_args: 0,
            changes: Changes::default(),
        }
    }
}

/// `Type::new(…).a(…).name("x")…`: the type path and the name given (`Some(None)` when the
/// name is not a literal).
fn construction(mut expr: &syn::Expr) -> Option<(syn::Path, Option<Option<String>>)> {
    let mut name = None;
    loop {
        match expr {
            syn::Expr::MethodCall(m) => {
                if m.method == "name" && name.is_none() {
                    name = Some(m.args.first().and_then(string_literal));
                }
                expr = &m.receiver;
            }
            syn::Expr::Call(c) => return Some((constructor_path(c)?, name)),
            syn::Expr::Paren(p) => expr = &p.expr,
            syn::Expr::Macro(m) if is_sequential_macro(&m.mac) => {
                return Some((syn::parse_quote!(::flax::nn::Sequential), name));
            }
            _ => return None,
        }
    }
}

/// `sequential![…]` (`flax::sequential!`), which constructs a `Sequential`.
fn is_sequential_macro(mac: &syn::Macro) -> bool {
    mac.path.segments.last().is_some_and(|s| s.ident == "sequential")
}

/// The library's generic modules, whose params type cannot be named without their generic
/// arguments (`nn::RNN<C>`).
const GENERIC_MODULES: [&str; 2] = ["RNN", "Bidirectional"];

/// Whether a view field of this module type cannot be written: a generic module.
fn untypable(path: &syn::Path) -> bool {
    path.segments.last().is_none_or(|last| {
        !last.arguments.is_none() || GENERIC_MODULES.contains(&last.ident.to_string().as_str())
    })
}

fn address<T>(node: &T) -> usize {
    node as *const T as usize
}

fn type_name(path: &syn::Path) -> String {
    path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default()
}

/// `Dense_0` → `dense_0`; `None` when the name is not a usable field identifier.
fn field_ident(name: &str) -> Option<syn::Ident> {
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 && !snake.ends_with('_') {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else {
            snake.push(c);
        }
    }
    if snake == "tree" || snake == "fields" {
        return None;
    }
    syn::parse_str::<syn::Ident>(&snake).ok()
}

impl Walker<'_> {
    fn arity(&self) -> Arity {
        if self.depth_loop > 0 {
            Arity::Many
        } else if self.depth_cond > 0 {
            Arity::Optional
        } else {
            Arity::One
        }
    }

    /// Takes the next auto index of `type_name` (`None` once it is no longer known).
    fn next_index(&mut self, type_name: &str, arity: Arity) -> Option<u32> {
        let fresh = if self.all_unknown { None } else { Some(0) };
        let slot = match self.counters.iter_mut().find(|(t, _)| t == type_name) {
            Some((_, n)) => n,
            None => {
                self.counters.push((type_name.to_owned(), fresh));
                &mut self.counters.last_mut().expect("just pushed").1
            }
        };
        let index = *slot;
        *slot = if arity == Arity::Many { None } else { slot.map(|n| n + 1) };
        index
    }

    /// From here on the auto-names of `type_name` are unknown (modules of that type may be
    /// constructed any number of times: in a closure, or where the scan cannot follow).
    fn forget(&mut self, type_name: &str) {
        match self.counters.iter_mut().find(|(t, _)| t == type_name) {
            Some((_, n)) => *n = None,
            None => self.counters.push((type_name.to_owned(), None)),
        }
    }

    /// From here on no auto-name is known: the body called code that may construct modules.
    fn forget_all(&mut self) {
        self.all_unknown = true;
        for (_, n) in &mut self.counters {
            *n = None;
        }
    }

    fn add_submodule(
        &mut self,
        path: syn::Path,
        name: Option<Option<String>>,
        arity: Arity,
        index: Option<u32>,
    ) {
        let (key, field) = match (name, arity) {
            (Some(None), _) | (Some(Some(_)), Arity::Many) => return,
            (Some(Some(lit)), _) => (Key::Name(lit.clone()), field_ident(&lit)),
            (None, Arity::Many) => {
                let Some(start) = index else { return };
                let t = type_name(&path);
                let field = field_ident(&format!("{t}_from_{start}"));
                (Key::From { type_name: t, start }, field)
            }
            (None, _) => {
                let Some(index) = index else { return };
                let name = format!("{}_{index}", type_name(&path));
                (Key::Name(name.clone()), field_ident(&name))
            }
        };
        if untypable(&path) {
            return;
        }
        self.push(field, key, Kind::Submodule(path), arity);
    }

    /// Scans the arguments of the construction at the bottom of `expr` (before its own
    /// auto-name is taken, as Rust evaluates them first), once.
    ///
    /// Returns whether modules were handed to it there: such a holder's field views may not
    /// match the tree (a module with a parent keeps its place, Flax's rule), so it gets no
    /// field.
    fn visit_construction(&mut self, expr: &syn::Expr) -> bool {
        let before = self.module_args_seen;
        match innermost(expr) {
            syn::Expr::Call(call) => {
                self.in_module_args += 1;
                self.visit_constructor_args(call);
                self.in_module_args -= 1;
            }
            syn::Expr::Macro(m) => self.visit_macro(&m.mac),
            _ => {}
        }
        self.module_args_seen > before
    }

    fn visit_constructor_args(&mut self, call: &syn::ExprCall) {
        if self.done.contains(&address(call)) {
            return;
        }
        self.done.push(address(call));
        let sequential = constructor_path(call).is_some_and(|p| type_name(&p) == "Sequential");
        self.in_sequential += usize::from(sequential);
        self.recording(call, |s| call.args.iter().for_each(|arg| s.visit_expr(arg)));
        self.in_sequential -= usize::from(sequential);
    }

    /// Runs `walk` on `node`, recording which changes it makes.
    fn recording<T>(&mut self, node: &T, walk: impl FnOnce(&mut Self)) {
        let start = self.changes.variables.len();
        walk(self);
        let end = self.changes.variables.len();
        if end > start {
            self.changes.nodes.push((address(node), start..end));
        }
    }

    /// Records that the statement may change `variable`.
    fn changes(&mut self, variable: Option<String>) {
        self.changes.variables.extend(variable);
    }

    /// Records what a method call names or declares through the scope (its receiver and
    /// arguments are walked on their own).
    fn record(&mut self, call: &syn::ExprMethodCall) {
        if self.in_macro > 0 {
            return;
        }
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
    }

    fn push(&mut self, field: Option<syn::Ident>, key: Key, kind: Kind, arity: Arity) {
        let Some(field) = field else { return };
        if self.uses.entries.iter().any(|e| e.field == field) {
            return;
        }
        self.uses.entries.push(Entry { field, key, kind, arity });
    }
}

impl<'ast> Visit<'ast> for Walker<'_> {
    /// A module constructed in a submodule's constructor arguments (the cell of an
    /// `RNN::new(LSTMCell::new(), …)`): it takes an auto-name here, after its own arguments.
    fn visit_expr(&mut self, expr: &'ast syn::Expr) {
        if self.in_module_args > 0 && self.in_sequential == 0 {
            if let (Some((path, name)), syn::Expr::Call(call)) = (construction(expr), innermost(expr)) {
                if !self.done.contains(&address(call)) {
                    self.module_args_seen += 1;
                    self.visit_construction(expr);
                    if name.is_none() {
                        let arity = self.arity();
                        self.next_index(&type_name(&path), arity);
                    }
                }
            }
            if let syn::Expr::Path(p) = expr {
                if self.pending.iter().any(|b| p.path.is_ident(&b.binding)) {
                    self.module_args_seen += 1;
                }
            }
        }
        self.recording(expr, |s| syn::visit::visit_expr(s, expr));
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if let (syn::Pat::Ident(binding), Some(init)) = (&local.pat, &local.init) {
            if let Some((path, name)) = construction(&init.expr) {
                let holds_modules = self.visit_construction(&init.expr);
                let arity = self.arity();
                let index = if name.is_none() { self.next_index(&type_name(&path), arity) } else { None };
                self.pending.push(Pending {
                    binding: binding.ident.clone(),
                    path,
                    name,
                    arity,
                    index,
                    holds_modules,
                });
                // The chain's own calls (`.name("x")`) and their arguments (a param declared
                // there is this module's); the constructor's arguments were walked above.
                self.visit_expr(&init.expr);
                return;
            }
        }
        syn::visit::visit_local(self, local);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.record(call);
        if call.method.to_string().ends_with('_') {
            self.changes(assigned_variable(&call.receiver));
        }
        let with_scope = call.args.first().is_some_and(|a| is_ident(a, self.scope));
        let method = call.method.to_string();
        if is_ident(&call.receiver, self.scope)
            && ["param", "param_with_dtype", "param_fn"].contains(&method.as_str())
        {
            if let (Some(name), arity) = (call.args.first().and_then(string_literal), self.arity()) {
                if arity != Arity::Many {
                    self.push(field_ident(&name), Key::Name(name), Kind::Param, arity);
                }
            }
        } else if with_scope {
            if let Some((path, name)) = construction(&call.receiver) {
                let holds_modules = self.visit_construction(&call.receiver);
                let arity = self.arity();
                let index = if name.is_none() { self.next_index(&type_name(&path), arity) } else { None };
                if !holds_modules {
                    self.add_submodule(path, name, arity, index);
                }
            } else if let syn::Expr::Path(p) = &*call.receiver {
                if let Some(pos) = self.pending.iter().position(|b| p.path.is_ident(&b.binding)) {
                    let b = self.pending.remove(pos);
                    let arity =
                        if self.arity() == Arity::One { b.arity } else { self.arity().max_with(b.arity) };
                    if !b.holds_modules {
                        self.add_submodule(b.path, b.name, arity, b.index);
                    }
                }
            }
        }
        if self.in_sequential > 0 && method == "name" {
            if let syn::Expr::Call(inner) = innermost(&call.receiver) {
                self.named.push(address(inner));
            }
        }
        syn::visit::visit_expr_method_call(self, call);
        if matches!(&*call.receiver, syn::Expr::Path(p) if p.path.is_ident("self")) {
            // A helper method may construct modules, which take auto-names at run time.
            self.forget_all();
        }
    }

    /// A construction not called with the scope: in a `Sequential`'s layers it takes an
    /// auto-name of this module (after its arguments, as at run time).
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        let Some(path) = constructor_path(call) else {
            let callee = match &*call.func {
                syn::Expr::Path(p) => Some(&p.path),
                _ => None,
            };
            let lift = callee.and_then(|p| p.segments.last()).is_some_and(|last| {
                ["scan", "vmap", "remat", "checkpoint", "jit", "map_variables", "remat_scan"]
                    .contains(&last.ident.to_string().as_str())
            });
            self.in_lift_args += usize::from(lift);
            syn::visit::visit_expr_call(self, call);
            self.in_lift_args -= usize::from(lift);
            let local_function = callee.is_none_or(|p| {
                p.segments.len() == 1
                    && p.segments[0].ident.to_string().starts_with(|c: char| c.is_lowercase() || c == '_')
            });
            if local_function && !lift {
                // A local function (or a closure called by name) may construct modules.
                self.forget_all();
            }
            return;
        };
        if self.done.contains(&address(call)) {
            return;
        }
        self.visit_constructor_args(call);
        if self.in_sequential > 0 && !self.named.contains(&address(call)) {
            let arity = self.arity();
            self.next_index(&type_name(&path), arity);
        } else if self.in_lift_args == 0 && self.in_module_args == 0 {
            // Constructed where the scan cannot tell how often (a closure, a helper's
            // argument): the auto-names of its type are no longer known.
            self.forget(&type_name(&path));
        }
    }

    /// `sequential![…]` scans its layers as a `Sequential`'s (and is itself a construction of
    /// one); inside one, `vec![…]` is scanned as the list it builds.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.recording(mac, |s| s.changes.variables.extend(macro_variables(mac)));
        let sequential = is_sequential_macro(mac);
        let is_vec = mac.path.segments.last().is_some_and(|s| s.ident == "vec");
        if self.done.contains(&address(mac)) || !(sequential || (is_vec && self.in_sequential > 0)) {
            return;
        }
        self.done.push(address(mac));
        let Ok(items) = mac.parse_body_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated) else {
            return;
        };
        let items = Rc::new(items);
        self.parsed.push(Rc::clone(&items));
        self.in_sequential += usize::from(sequential);
        self.in_macro += 1;
        for item in items.iter() {
            self.visit_expr(item);
        }
        self.in_macro -= 1;
        self.in_sequential -= usize::from(sequential);
        if sequential && self.in_sequential > 0 {
            let arity = self.arity();
            self.next_index("Sequential", arity);
        }
    }

    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.conditional += 1;
        self.visit_expr(&e.cond);
        self.depth_cond += 1;
        self.visit_block(&e.then_branch);
        if let Some((_, other)) = &e.else_branch {
            self.visit_expr(other);
        }
        self.depth_cond -= 1;
        self.conditional -= 1;
    }

    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.conditional += 1;
        self.visit_expr(&e.expr);
        self.depth_cond += 1;
        for arm in &e.arms {
            self.visit_arm(arm);
        }
        self.depth_cond -= 1;
        self.conditional -= 1;
    }

    fn visit_expr_closure(&mut self, e: &'ast syn::ExprClosure) {
        if self.in_sequential > 0 {
            // A function layer's modules belong to the `Sequential`, which names them; only
            // its declarations count here (outside a compact method they are errors all the
            // same). It is `Fn + 'static`: it changes no variable of the body.
            let mut layer = Walker::new(self.scope);
            layer.visit_expr(&e.body);
            self.uses.declarations.extend(layer.uses.declarations);
            return;
        }
        let before = self.counters.clone();
        self.conditional += 1;
        self.depth_cond += 1;
        syn::visit::visit_expr_closure(self, e);
        self.depth_cond -= 1;
        self.conditional -= 1;
        // The closure may run any number of times: the types it constructs have no known
        // auto-names after it (its own constructions keep their first names, as `Option`s).
        let touched: Vec<String> =
            self.counters.iter().filter(|c| !before.contains(c)).map(|(t, _)| t.clone()).collect();
        for type_name in touched {
            self.forget(&type_name);
        }
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.conditional += 1;
        self.visit_expr(&e.expr);
        self.depth_loop += 1;
        self.visit_block(&e.body);
        self.depth_loop -= 1;
        self.conditional -= 1;
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.conditional += 1;
        self.depth_loop += 1;
        syn::visit::visit_expr_while(self, e);
        self.depth_loop -= 1;
        self.conditional -= 1;
    }

    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.conditional += 1;
        self.depth_loop += 1;
        syn::visit::visit_expr_loop(self, e);
        self.depth_loop -= 1;
        self.conditional -= 1;
    }

    fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
        self.changes(assigned_variable(&e.left));
        syn::visit::visit_expr_assign(self, e);
    }

    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if is_compound_assign(&e.op) {
            self.changes(assigned_variable(&e.left));
        }
        syn::visit::visit_expr_binary(self, e);
    }

    fn visit_expr_reference(&mut self, e: &'ast syn::ExprReference) {
        if e.mutability.is_some() {
            self.changes(assigned_variable(&e.expr));
        }
        syn::visit::visit_expr_reference(self, e);
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// The variables a macro may change: none for the standard formatting, assertion and `vec!`
/// macros, else every identifier it is given.
fn macro_variables(mac: &syn::Macro) -> Vec<String> {
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
    crate::tokens::idents(mac.tokens.clone())
}

impl Arity {
    /// The looser of two arities (a `Vec` holds an `Option`'s case, an `Option` a single one).
    fn max_with(self, other: Arity) -> Arity {
        match (self, other) {
            (Arity::Many, _) | (_, Arity::Many) => Arity::Many,
            (Arity::Optional, _) | (_, Arity::Optional) => Arity::Optional,
            _ => Arity::One,
        }
    }
}
