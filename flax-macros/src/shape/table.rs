//! The table of a declared method's submodule calls, known at compile time: per call on the
//! body's straight-line path, its Flax path (`Dense_0`), module, input shapes and output
//! shape in the declaration's symbols — what `tabulate` prints at run time. The interpreter
//! (`infer`) records the calls and the constructions it follows; this resolves their names
//! and writes their shapes; `crate::expand::shape_doc` renders the table into the method's
//! rustdoc and a hidden constant.
//!
//! A name is given only where it is certain. Auto-names are counted per type over the
//! constructions the interpreter followed, and kept for a type only when the body's walk
//! (`crate::walk`, the auto-naming the typed params view uses) names the same straight-line
//! calls of that type: a construction the interpreter does not see (in a `Sequential`'s
//! layers, a constructor's arguments, a closure, a helper method) makes that type's paths
//! unknown rather than wrong.

use super::dim::show;
use super::infer::Val;
use crate::body::{builder_calls, constructor_path, innermost, string_literal};
use crate::walk::{Arity, Key, Kind, ScopeUses};

/// A module construction the interpreter followed, in evaluation order.
pub struct Constructed {
    /// The type's name (`Dense`, a user module's `VaeEncoder`).
    pub type_name: String,
    /// `.name(…)`: `Some(Some(literal))`, `Some(None)` when not a literal.
    pub name: Option<Option<String>>,
}

/// Which module a call runs.
#[derive(Clone, PartialEq)]
pub enum Callee {
    /// The construction with this index (`Recorder::constructions`).
    Constructed(usize),
    /// A submodule field, `self.<field>` (named after the field at run time).
    Field(String),
    /// A method of the module itself (`self.encode(cx, x)`): not a submodule, no row.
    Own,
    Unknown,
}

/// A submodule call on the body's straight-line path.
pub struct Call {
    pub callee: Callee,
    pub method: String,
    /// The arguments after the scope: their values and source text.
    pub args: Vec<(Val, String)>,
    pub output: Val,
}

/// What the interpreter records for the table.
#[derive(Default)]
pub struct Recorder {
    pub constructions: Vec<Constructed>,
    pub calls: Vec<Call>,
}

impl Recorder {
    /// Records the construction `expr` (`Type::new(…)…`, `sequential![…]`), if it is one:
    /// which construction a call of the value runs.
    pub fn constructed(&mut self, expr: &syn::Expr) -> Callee {
        let type_name = match innermost(expr) {
            syn::Expr::Call(call) => {
                constructor_path(call).and_then(|p| p.segments.last().map(|s| s.ident.to_string()))
            }
            syn::Expr::Macro(m) if m.mac.path.segments.last().is_some_and(|s| s.ident == "sequential") => {
                Some("Sequential".to_owned())
            }
            _ => None,
        };
        let Some(type_name) = type_name else { return Callee::Unknown };
        let name = builder_calls(expr)
            .into_iter()
            .find(|b| b.method == "name")
            .map(|b| b.args.first().and_then(string_literal));
        self.constructions.push(Constructed { type_name, name });
        Callee::Constructed(self.constructions.len() - 1)
    }

    /// Records a call of `callee`'s `method` with `args` (after the scope, with their source).
    pub fn called(&mut self, callee: Callee, method: &syn::Ident, args: Vec<(Val, String)>, output: &Val) {
        if callee == Callee::Own {
            return;
        }
        self.calls.push(Call { callee, method: method.to_string(), args, output: output.clone() });
    }
}

/// One row of the table, as text.
pub struct Row {
    /// The call's module path in the declared module (`None`: not known at compile time).
    pub path: Option<String>,
    /// The module's type, with the method unless `call` (`Embed (attend)`), as `tabulate`
    /// shows it (`None`: not known, as a field's type, which the impl block cannot see).
    pub module: Option<String>,
    /// One cell per argument after the scope: a tensor's shape (`[B, 784]`), else its source.
    pub inputs: Vec<String>,
    pub output: String,
}

/// What the table shows for a shape only rustc computes (from a declared child's contract).
pub const BY_RUSTC: &str = "known to rustc only";

/// A value as a cell: a shape in the declaration's symbols (`_` an unknown dimension, `?`
/// an unknown tensor), a tuple of them, or `source` for anything else.
fn cell(value: &Val, source: &str) -> String {
    match value {
        Val::Tensor(Some(dims)) => show(&Some(dims.clone())),
        Val::Tensor(None) => "?".to_owned(),
        Val::Deferred(_) => BY_RUSTC.to_owned(),
        Val::Tuple(parts) => {
            format!("({})", parts.iter().map(|p| cell(p, "?")).collect::<Vec<_>>().join(", "))
        }
        _ => source.to_owned(),
    }
}

/// The auto-name each construction takes at run time (`None`: explicitly named, or not known).
fn auto_names(recorder: &Recorder, uses: &ScopeUses) -> Vec<Option<String>> {
    let mut counters: Vec<(&str, u32)> = Vec::new();
    let mut names: Vec<Option<String>> = recorder
        .constructions
        .iter()
        .map(|c| {
            c.name.is_none().then(|| {
                let slot = match counters.iter_mut().find(|(t, _)| *t == c.type_name) {
                    Some((_, n)) => n,
                    None => {
                        counters.push((&c.type_name, 0));
                        &mut counters.last_mut().expect("just pushed").1
                    }
                };
                *slot += 1;
                format!("{}_{}", c.type_name, *slot - 1)
            })
        })
        .collect();
    for (type_name, _) in counters {
        if !walk_agrees(type_name, recorder, &names, uses) {
            for (name, c) in names.iter_mut().zip(&recorder.constructions) {
                if c.type_name == type_name {
                    *name = None;
                }
            }
        }
    }
    names
}

/// Whether the walk names the auto-named straight-line calls of `type_name` exactly as
/// counted here.
fn walk_agrees(type_name: &str, recorder: &Recorder, names: &[Option<String>], uses: &ScopeUses) -> bool {
    let mut walked: Vec<&str> = uses
        .entries
        .iter()
        .filter_map(|e| match (&e.kind, &e.key, e.arity) {
            (Kind::Submodule(path), Key::Name(name), Arity::One)
                if path.segments.last().is_some_and(|s| s.ident == type_name)
                    && name
                        .strip_prefix(type_name)
                        .and_then(|n| n.strip_prefix('_'))
                        .is_some_and(|n| n.parse::<u32>().is_ok()) =>
            {
                Some(name.as_str())
            }
            _ => None,
        })
        .collect();
    let mut called: Vec<&str> = recorder
        .calls
        .iter()
        .filter_map(|call| match &call.callee {
            Callee::Constructed(i) if recorder.constructions[*i].type_name == type_name => {
                names[*i].as_deref()
            }
            _ => None,
        })
        .collect();
    walked.sort_unstable();
    called.sort_unstable();
    called.dedup();
    walked == called
}

/// The rows of the table, one per module first called on the straight-line path, in call
/// order (a module called again, as `tabulate` shows it by default, has no second row).
pub fn rows(recorder: &Recorder, uses: &ScopeUses) -> Vec<Row> {
    let names = auto_names(recorder, uses);
    let mut seen: Vec<&Callee> = Vec::new();
    let mut rows = Vec::new();
    for call in &recorder.calls {
        if call.callee != Callee::Unknown {
            if seen.contains(&&call.callee) {
                continue;
            }
            seen.push(&call.callee);
        }
        let (path, type_name) = match &call.callee {
            Callee::Constructed(i) => {
                let c = &recorder.constructions[*i];
                let path = match &c.name {
                    Some(literal) => literal.clone(),
                    None => names[*i].clone(),
                };
                (path, Some(c.type_name.clone()))
            }
            Callee::Field(field) => (Some(field.clone()), None),
            Callee::Own | Callee::Unknown => (None, None),
        };
        let module = type_name.map(|t| match call.method.as_str() {
            "call" => t,
            method => format!("{t} ({method})"),
        });
        let inputs = call.args.iter().map(|(value, source)| cell(value, source)).collect();
        rows.push(Row { path, module, inputs, output: cell(&call.output, "?") });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::super::{decl, resolve, Checker};
    use super::*;

    /// The table of a declared `method` (scope `cx`, its tensor arguments `&Tensor`): per row
    /// its path (`?` when not known), module, inputs and output.
    fn table(mut method: syn::ImplItemFn) -> Vec<String> {
        let declaration = decl::take(&mut method).unwrap().unwrap();
        let tensor: syn::Type = syn::parse_quote!(&Tensor);
        let args: Vec<(Option<syn::Ident>, &syn::Type)> =
            declaration.inputs.iter().map(|i| (Some(i.name.clone()), &tensor)).collect();
        let declared = resolve(&declaration, &method.sig.ident, &args, &syn::parse_quote!(Tensor))
            .map_err(|_| ())
            .unwrap();
        let scope: syn::Ident = syn::parse_quote!(cx);
        let mut checker = Checker::new(&declared, &scope, Vec::new(), None);
        let uses = crate::walk::walk(&method.block, &scope, Some(&mut checker));
        rows(&checker.finish().table, &uses)
            .iter()
            .map(|r| {
                let path = r.path.as_deref().unwrap_or("?");
                let module = r.module.as_deref().unwrap_or("?");
                format!("{path} {module} {} -> {}", r.inputs.join(" "), r.output)
            })
            .collect()
    }

    /// Auto-names come from construction order, not call order; explicit names take no index;
    /// a module called twice has one row.
    #[test]
    fn rows_are_named_as_at_run_time() {
        let rows = table(syn::parse_quote! {
            #[shape(x: [B, 4] -> [B, 2])]
            fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let a = nn::Dense::new(3);
                let b = nn::Dense::new(4);
                let y = b.call(cx, x)?;
                let y = nn::Dense::new(4).name("middle").call(cx, &y)?;
                let z = a.call(cx, &y)?;
                let z = nn::Dense::new(2).call(cx, &z)?;
                let _ = a.call(cx, &y)?;
                Ok(z)
            }
        });
        assert_eq!(
            rows,
            [
                "Dense_1 Dense [B, 4] -> [B, 4]",
                "middle Dense [B, 4] -> [B, 4]",
                "Dense_0 Dense [B, 4] -> [B, 3]",
                "Dense_2 Dense [B, 3] -> [B, 2]",
            ]
        );
    }

    /// A construction the interpreter does not follow (a helper method, a closure) would
    /// shift the auto-names of its type: those paths are unknown, not guessed.
    #[test]
    fn paths_the_macro_cannot_be_sure_of_are_unknown() {
        let rows = table(syn::parse_quote! {
            #[shape(x: [B, 4] -> [B, 2])]
            fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let h = self.block(cx, x)?;
                let y = nn::Dense::new(8).call(cx, x)?;
                nn::Dense::new(2).call(cx, &y)
            }
        });
        assert_eq!(rows, ["? Dense [B, 4] -> [B, 8]", "? Dense [B, 8] -> [B, 2]"]);
        let rows = table(syn::parse_quote! {
            #[shape(x: [B, 4] -> [B, 2])]
            fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
                let f = |t: &Tensor| nn::LayerNorm::new().call(cx, t);
                let y = nn::LayerNorm::new().call(cx, x)?;
                nn::Dense::new(2).call(cx, &y)
            }
        });
        assert_eq!(rows, ["? LayerNorm [B, 4] -> [B, 4]", "Dense_0 Dense [B, 4] -> [B, 2]"]);
    }

    /// Fields are named after themselves; a child's declared output is rustc's; an argument
    /// the interpreter does not follow is shown as written.
    #[test]
    fn fields_children_and_other_arguments() {
        let rows = table(syn::parse_quote! {
            #[shape(x: [B, 4] -> [B, 2])]
            fn call(&self, cx: &mut Scope, x: &Tensor, train: bool) -> Result<Tensor> {
                let y = self.encoder.call(cx, x)?;
                let y = Child::new().call(cx, x)?;
                nn::BatchNorm::new().call(cx, x, Some(!train))
            }
        });
        assert_eq!(
            rows,
            [
                "encoder ? [B, 4] -> ?",
                &format!("Child_0 Child [B, 4] -> {BY_RUSTC}"),
                "BatchNorm_0 BatchNorm [B, 4] Some(!train) -> [B, 4]",
            ]
        );
    }
}
