//! The library layers the checker follows, read from their construction
//! `nn::Layer::new(…).builder(…)…`, and their shape rules.
//!
//! Only paths through `nn` (`nn::Dense`, `flax::nn::Dense`) are the library's: a type of the
//! user's that happens to be called `Dense` is not mistaken for it.

use super::dim::{axis_index, show, Dim, Shape};
use super::ops::{transposed_positions, window_positions, Pad, TooLarge, Window};
use crate::body::{builder_calls, constructor_path, innermost};

/// A layer as far as its shape rule needs it.
#[derive(Clone)]
pub enum Layer {
    /// `Dense`: the last dimension becomes `features`.
    Dense { features: Dim },
    /// `Conv` (`ConvTranspose` when `transpose`): `None` for a kernel size or spatial
    /// attribute the syntax does not show.
    Conv { features: Dim, kernel: Option<Vec<i64>>, geometry: Option<Geometry>, transpose: bool },
    /// `Embed`.
    Embed { num_embeddings: Dim, features: Dim },
    /// The norms and `Dropout`: the output has the input's shape.
    SameShape,
    /// `MultiHeadDotProductAttention`/`SelfAttention`: the query's shape, its last dimension
    /// `out_features` (`None`: the query's own).
    Attention { out_features: Option<Dim> },
    /// `DenseGeneral`: `None` where the syntax does not show the value.
    DenseGeneral { features: Option<Vec<Dim>>, axis: Option<Vec<i64>>, batch_dims: Option<Vec<i64>> },
    /// `LSTMCell`/`OptimizedLSTMCell`/`GRUCell`.
    Cell(Cell),
    /// `RNN` of a cell (`None`: a cell the checker does not know) with an int `cell_size`.
    Rnn { cell: Option<Cell>, size: Dim, time_major: Option<bool> },
    /// `Sequential`/`sequential![…]` of these layers, in order.
    Sequential(Vec<Layer>),
    /// A module of the user's: its `#[shape]` contract, if any, is checked by rustc.
    User(syn::Path),
    /// A submodule field (`self.encoder`): its type's contract, if any, is checked by rustc
    /// (through the module's `__FLAX_FIELDS`).
    Field(syn::Ident),
    /// An element of a `Vec` or array submodule field (`self.layers[i]`): its element type's
    /// contract, if any, is checked by rustc (`layers[]` in `__FLAX_FIELDS`).
    Element(syn::Ident),
    /// Anything else.
    Unknown,
}

/// The recurrent cells the checker follows: their carry is `(c, h)` (LSTM) or `h` (GRU),
/// each `[…batch, hidden]`.
#[derive(Clone, Copy, PartialEq)]
pub enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    /// The cell a library type names.
    pub fn named(name: &str) -> Option<Cell> {
        match name {
            "LSTMCell" | "OptimizedLSTMCell" => Some(Cell::Lstm),
            "GRUCell" => Some(Cell::Gru),
            _ => None,
        }
    }
}

/// Reads a size argument: its dimension (unknown when not an integer the checker follows) and
/// whether it is certainly an integer (not, say, a `Vec` turned `into()` a `Dims`).
pub type SizeOf<'a> = &'a mut dyn FnMut(&syn::Expr) -> (Dim, bool);

/// A convolution's strides, dilations and padding, each given per spatial dimension or as
/// one int for all.
#[derive(Clone)]
pub struct Geometry {
    pub strides: PerDim,
    pub input_dilation: PerDim,
    pub kernel_dilation: PerDim,
    pub padding: Pad,
}

/// Flax's `int | Sequence[int]`.
#[derive(Clone)]
pub enum PerDim {
    All(i64),
    Each(Vec<i64>),
}

impl PerDim {
    fn get(&self, i: usize, n: usize) -> Option<i64> {
        match self {
            PerDim::All(v) => Some(*v),
            PerDim::Each(values) if values.len() == n => Some(values[i]),
            PerDim::Each(_) => None,
        }
    }
}

const SAME_SHAPE: [&str; 6] = ["LayerNorm", "RMSNorm", "BatchNorm", "GroupNorm", "InstanceNorm", "Dropout"];

/// Whether `path` names a type of the library's `nn` module.
pub fn library_type(path: &syn::Path) -> Option<String> {
    let n = path.segments.len();
    (n >= 2 && path.segments[n - 2].ident == "nn").then(|| path.segments[n - 1].ident.to_string())
}

/// The layer a construction chain builds, or `None` when `expr` is not a construction.
/// `dim` reads a size argument (a literal, `self.features`, a size of a known tensor).
///
/// A user module is a plain type path, named as types are (capitalised), that is not one of
/// `generics` (the enclosing impl's and method's type parameters, which the `const` check
/// of its contract could not name).
pub fn construction(expr: &syn::Expr, generics: &[String], size: SizeOf<'_>) -> Option<Layer> {
    if let syn::Expr::Macro(m) = innermost(expr) {
        if m.mac.path.segments.last().is_some_and(|s| s.ident == "sequential") {
            let parts = m
                .mac
                .parse_body_with(syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated)
                .ok()?;
            return Some(sequential(parts.iter(), generics, size));
        }
    }
    let syn::Expr::Call(call) = innermost(expr) else { return None };
    let path = constructor_path(call)?;
    let Some(name) = library_type(&path) else {
        let plain = path.segments.iter().all(|s| s.arguments.is_none());
        let first = path.segments[0].ident.to_string();
        let capitalised =
            path.segments.last().is_some_and(|s| s.ident.to_string().starts_with(char::is_uppercase));
        let user = plain && capitalised && first != "Self" && !generics.contains(&first);
        return Some(if user { Layer::User(path) } else { Layer::Unknown });
    };
    let args: Vec<&syn::Expr> = call.args.iter().collect();
    let builders = builder_calls(expr);
    Some(match name.as_str() {
        "Dense" => Layer::Dense { features: args.first().map_or(Dim::Unknown, |a| size(a).0) },
        "DenseGeneral" => {
            let mut axis = Some(vec![-1]);
            let mut batch_dims = Some(Vec::new());
            for b in &builders {
                match (b.method.to_string().as_str(), b.args.first()) {
                    ("axis", Some(a)) => axis = dims_arg(a, &mut *size).and_then(literals),
                    ("batch_dims", Some(a)) => batch_dims = int_list(a),
                    _ => {}
                }
            }
            Layer::DenseGeneral {
                features: args.first().and_then(|a| dims_arg(a, &mut *size)),
                axis,
                batch_dims,
            }
        }
        n if Cell::named(n).is_some() => Layer::Cell(Cell::named(n).expect("checked")),
        "RNN" => {
            let cell = match args.first().map(|a| construction(a, generics, &mut *size)) {
                Some(Some(Layer::Cell(cell))) => Some(cell),
                _ => None,
            };
            let size = match args.get(1).and_then(|a| dims_arg(a, &mut *size)) {
                Some(dims) if dims.len() == 1 && is_int_dims(args[1]) => dims[0].clone(),
                _ => Dim::Unknown,
            };
            let mut time_major = Some(false);
            for b in builders.iter().filter(|b| b.method == "time_major") {
                time_major = match b.args.first() {
                    Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Bool(v), .. })) => Some(v.value),
                    _ => None,
                };
            }
            Layer::Rnn { cell, size, time_major }
        }
        "Sequential" => match args.first().and_then(|a| list_elements(a)) {
            Some(parts) => {
                let unwrapped: Vec<syn::Expr> = parts
                    .iter()
                    .map(|p| match p {
                        syn::Expr::Call(c)
                            if c.args.len() == 1 && call_name(c).as_deref() == Some("layer") =>
                        {
                            c.args[0].clone()
                        }
                        other => other.clone(),
                    })
                    .collect();
                sequential(unwrapped.iter(), generics, size)
            }
            None => Layer::Unknown,
        },
        "Conv" | "ConvTranspose" | "ConvLocal" => Layer::Conv {
            features: args.first().map_or(Dim::Unknown, |a| size(a).0),
            kernel: args.get(1).and_then(|a| int_list(a)),
            geometry: geometry(&builders),
            transpose: name == "ConvTranspose",
        },
        "Embed" => Layer::Embed {
            num_embeddings: args.first().map_or(Dim::Unknown, |a| size(a).0),
            features: args.get(1).map_or(Dim::Unknown, |a| size(a).0),
        },
        "MultiHeadDotProductAttention" | "SelfAttention" => {
            let mut out_features = None;
            for b in builders.iter().filter(|b| b.method == "out_features") {
                out_features = Some(match b.args.first().and_then(some_arg) {
                    Some(inner) => size(inner).0,
                    None if b.args.first().is_some_and(is_none) => continue,
                    None => Dim::Unknown,
                });
            }
            Layer::Attention { out_features }
        }
        n if SAME_SHAPE.contains(&n) => Layer::SameShape,
        _ => Layer::Unknown,
    })
}

/// The last name of a call's function path (`layer` of `nn::layer(…)`).
fn call_name(call: &syn::ExprCall) -> Option<String> {
    match &*call.func {
        syn::Expr::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// The layers of a `Sequential`: constructions, and `nn::` activation functions by path.
fn sequential<'e>(
    parts: impl Iterator<Item = &'e syn::Expr>,
    generics: &[String],
    size: SizeOf<'_>,
) -> Layer {
    let layers = parts
        .map(|p| match p {
            syn::Expr::Path(f) if same_shape_function(&f.path) => Layer::SameShape,
            other => construction(other, generics, &mut *size).unwrap_or(Layer::Unknown),
        })
        .collect();
    Layer::Sequential(layers)
}

/// A `Dims` argument (`features`, `axis`, `cell_size`): `n.into()`, `Dims::Int(n)`,
/// `Dims::Seq(vec![…])`, `vec![…].into()`, `[…].into()`, a literal. `None` unless each size
/// is certainly an integer.
fn dims_arg(expr: &syn::Expr, size: SizeOf<'_>) -> Option<Vec<Dim>> {
    match expr {
        syn::Expr::MethodCall(m) if m.method == "into" && m.args.is_empty() => {
            dims_arg(&m.receiver, &mut *size)
        }
        syn::Expr::Call(c) => {
            let variant = call_name(c)?;
            let arg = c.args.first()?;
            match variant.as_str() {
                "Int" | "Seq" | "from" => dims_arg(arg, &mut *size),
                _ => None,
            }
        }
        _ => match list_elements(expr) {
            Some(elements) => elements.iter().map(|e| certain(size(e))).collect(),
            None => certain(size(expr)).map(|d| vec![d]),
        },
    }
}

/// Whether a `Dims` argument is one int (not a sequence of one).
fn is_int_dims(expr: &syn::Expr) -> bool {
    match expr {
        syn::Expr::MethodCall(m) if m.method == "into" => is_int_dims(&m.receiver),
        syn::Expr::Call(c) => {
            call_name(c).as_deref() == Some("Int") || c.args.first().is_some_and(is_int_dims)
        }
        other => list_elements(other).is_none(),
    }
}

fn certain((dim, int): (Dim, bool)) -> Option<Dim> {
    int.then_some(dim)
}

/// The literal values of sizes.
fn literals(dims: Vec<Dim>) -> Option<Vec<i64>> {
    dims.iter().map(Dim::as_lit).collect()
}

/// `Some(x)` → `x`.
fn some_arg(expr: &syn::Expr) -> Option<&syn::Expr> {
    match expr {
        syn::Expr::Call(c) if matches!(&*c.func, syn::Expr::Path(p) if p.path.is_ident("Some")) => {
            c.args.first()
        }
        _ => None,
    }
}

fn is_none(expr: &syn::Expr) -> bool {
    matches!(expr, syn::Expr::Path(p) if p.path.is_ident("None"))
}

/// An integer literal, possibly negative.
pub fn int_literal(expr: &syn::Expr) -> Option<i64> {
    match expr {
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(i), .. }) => i.base10_parse().ok(),
        syn::Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => int_literal(&u.expr).map(|v| -v),
        syn::Expr::Paren(p) => int_literal(&p.expr),
        syn::Expr::Group(g) => int_literal(&g.expr),
        _ => None,
    }
}

/// The elements of `[a, b]`, `&[a, b]`, `vec![a, b]`, `vec![a; n]` (as expressions).
pub fn list_elements(expr: &syn::Expr) -> Option<Vec<syn::Expr>> {
    match expr {
        syn::Expr::Reference(r) => list_elements(&r.expr),
        syn::Expr::Paren(p) => list_elements(&p.expr),
        syn::Expr::Array(a) => Some(a.elems.iter().cloned().collect()),
        syn::Expr::Repeat(r) => {
            let n = usize::try_from(int_literal(&r.len)?).ok()?;
            Some(vec![(*r.expr).clone(); n])
        }
        syn::Expr::Macro(m) if m.mac.path.is_ident("vec") => {
            if let Ok(repeat) = m.mac.parse_body::<syn::ExprRepeat>() {
                return list_elements(&syn::Expr::Repeat(repeat));
            }
            let elems = m
                .mac
                .parse_body_with(syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated)
                .ok()?;
            Some(elems.into_iter().collect())
        }
        _ => None,
    }
}

/// A list of integer literals.
pub fn int_list(expr: &syn::Expr) -> Option<Vec<i64>> {
    list_elements(expr)?.iter().map(int_literal).collect()
}

/// `2`, `[2, 2]`, `2.into()`, `[2, 2].into()`, `Dims::Int(2)`, `Dims::Seq(vec![2, 2])`.
fn per_dim(expr: &syn::Expr) -> Option<PerDim> {
    match expr {
        syn::Expr::MethodCall(m) if m.method == "into" && m.args.is_empty() => per_dim(&m.receiver),
        syn::Expr::Call(c) => {
            let syn::Expr::Path(p) = &*c.func else { return None };
            let variant = p.path.segments.last()?.ident.to_string();
            let arg = c.args.first()?;
            match variant.as_str() {
                "Int" => int_literal(arg).map(PerDim::All),
                "Seq" | "from" => per_dim(arg),
                _ => None,
            }
        }
        _ => int_literal(expr).map(PerDim::All).or_else(|| int_list(expr).map(PerDim::Each)),
    }
}

/// `Padding::Same`, `nn::Padding::Valid`, `Padding::Int(1)`, `1`, `1.into()`; else unknown.
fn padding(expr: &syn::Expr) -> Pad {
    match expr {
        syn::Expr::Path(p) => match p.path.segments.last().map(|s| s.ident.to_string()).as_deref() {
            Some("Same") => Pad::Same,
            Some("Valid") => Pad::Valid,
            Some("Circular") => Pad::Circular,
            Some("Causal") => Pad::Causal,
            _ => Pad::Unknown,
        },
        syn::Expr::Reference(r) => padding(&r.expr),
        syn::Expr::Call(c) if matches!(&*c.func, syn::Expr::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Int")) => {
            c.args.first().and_then(int_literal).map_or(Pad::Unknown, Pad::Int)
        }
        syn::Expr::MethodCall(m) if m.method == "into" => {
            int_literal(&m.receiver).map_or(Pad::Unknown, Pad::Int)
        }
        other => int_literal(other).map_or(Pad::Unknown, Pad::Int),
    }
}

/// A convolution's geometry from its builder calls (`None` when one is not a literal).
fn geometry(builders: &[&syn::ExprMethodCall]) -> Option<Geometry> {
    let mut g = Geometry {
        strides: PerDim::All(1),
        input_dilation: PerDim::All(1),
        kernel_dilation: PerDim::All(1),
        padding: Pad::Same,
    };
    for b in builders {
        let arg = b.args.first();
        match b.method.to_string().as_str() {
            "strides" => g.strides = per_dim(arg?)?,
            "input_dilation" => g.input_dilation = per_dim(arg?)?,
            "kernel_dilation" => g.kernel_dilation = per_dim(arg?)?,
            "padding" => g.padding = padding(arg?),
            _ => {}
        }
    }
    Some(g)
}

/// The output positions of one spatial dimension (`window_positions`, `transposed_positions`).
type Positions = fn(&Dim, &Window, &Pad) -> Result<Dim, TooLarge>;

/// A shape rule's error: what went wrong, with both shapes.
pub type Rule = Result<Shape, String>;

/// `Dense`: `[…, in] → […, features]`; a scalar input is an error.
pub fn dense(features: &Dim, x: &Shape) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    if dims.is_empty() {
        return Err("nn::Dense needs an input of rank at least 1, got a scalar []".to_owned());
    }
    let mut out = dims.clone();
    *out.last_mut().expect("not empty") = features.clone();
    Ok(Some(out))
}

/// The spatial dimensions of a windowed op over `(*batch, spatial…, features)` inputs: the
/// rank check and the output positions. `what` names the op in messages; `positions` counts
/// the output positions of one dimension.
pub fn windowed(
    what: &str,
    x: &Shape,
    window: &[i64],
    geometry: &Geometry,
    last: Option<Dim>,
    positions: Positions,
) -> Rule {
    let n = window.len();
    let Some(dims) = x else { return Ok(None) };
    if dims.len() < n + 1 {
        return Err(format!(
            "{what} with a {n}-D window takes inputs of shape (*batch, {n} spatial dims, features), rank at \
             least {}; got {} of rank {}",
            n + 1,
            show(x),
            dims.len()
        ));
    }
    let first = dims.len() - n - 1;
    let mut out = dims.clone();
    for i in 0..n {
        let w = Window {
            size: window[i],
            stride: geometry.strides.get(i, n).unwrap_or(0),
            input_dilation: geometry.input_dilation.get(i, n).unwrap_or(0),
            kernel_dilation: geometry.kernel_dilation.get(i, n).unwrap_or(0),
        };
        if w.stride < 1 || w.input_dilation < 1 || w.kernel_dilation < 1 || w.size < 1 {
            out[first + i] = Dim::Unknown;
            continue;
        }
        out[first + i] = positions(&dims[first + i], &w, &geometry.padding).map_err(|too_large| {
            format!(
                "{what}: the VALID window of extent {} does not fit dimension {} of size {} of the input {} \
                 (Flax would return a zero-size output)",
                too_large.extent,
                first + i,
                too_large.input,
                show(x)
            )
        })?;
    }
    if let Some(last) = last {
        *out.last_mut().expect("rank at least 1") = last;
    }
    Ok(Some(out))
}

/// `Conv` (or `ConvTranspose`) on `x`.
pub fn conv(
    features: &Dim,
    kernel: &Option<Vec<i64>>,
    geometry: &Option<Geometry>,
    transpose: bool,
    x: &Shape,
) -> Rule {
    let (what, positions): (_, Positions) =
        if transpose { ("nn::ConvTranspose", transposed_positions) } else { ("nn::Conv", window_positions) };
    match (kernel, geometry) {
        (Some(kernel), Some(g)) => windowed(what, x, kernel, g, Some(features.clone()), positions),
        (Some(kernel), None) => {
            // The rank check holds whatever the geometry; the spatial sizes are unknown.
            let g = Geometry {
                strides: PerDim::All(0),
                input_dilation: PerDim::All(1),
                kernel_dilation: PerDim::All(1),
                padding: Pad::Unknown,
            };
            windowed(what, x, kernel, &g, Some(features.clone()), positions)
        }
        (None, _) => Ok(x.as_ref().map(|dims| {
            let mut out = vec![Dim::Unknown; dims.len()];
            if let Some(last) = out.last_mut() {
                *last = features.clone();
            }
            out
        })),
    }
}

/// `Embed::call`: integer ids `[…]` → `[…, features]`.
pub fn embed(features: &Dim, ids: &Shape) -> Shape {
    let mut out = ids.clone()?;
    out.push(features.clone());
    Some(out)
}

/// `Embed::attend`: `[…, features]` → `[…, num_embeddings]`.
pub fn attend(num_embeddings: &Dim, features: &Dim, query: &Shape) -> Rule {
    let Some(dims) = query else { return Ok(None) };
    let Some(last) = dims.last() else {
        return Err("nn::Embed::attend needs a query of rank at least 1, got a scalar []".to_owned());
    };
    if last.differs(features) {
        return Err(format!(
            "nn::Embed::attend takes queries of shape [.., {features}] (the embedding's features), got {}",
            show(query)
        ));
    }
    let mut out = dims.clone();
    *out.last_mut().expect("not empty") = num_embeddings.clone();
    Ok(Some(out))
}

/// Attention's output: the query's shape, its last dimension `out_features` if given.
pub fn attention(out_features: &Option<Dim>, query: &Shape) -> Shape {
    let mut out = query.clone()?;
    if let (Some(f), Some(last)) = (out_features, out.last_mut()) {
        *last = f.clone();
    }
    Some(out)
}

/// The geometry of pooling with an `n`-D window (`strides` `None`: 1).
pub fn pool_geometry(n: usize, strides: Option<Vec<i64>>, padding: Pad) -> Geometry {
    let strides = match strides {
        Some(s) if s.len() == n => PerDim::Each(s),
        Some(_) => PerDim::All(0),
        None => PerDim::All(1),
    };
    let padding = if matches!(padding, Pad::Same | Pad::Valid) { padding } else { Pad::Unknown };
    Geometry { strides, input_dilation: PerDim::All(1), kernel_dilation: PerDim::All(1), padding }
}

/// Pooling (`nn::avg_pool`, `max_pool`, `min_pool`): `window` over the spatial dimensions.
pub fn pool(what: &str, x: &Shape, window: &[i64], strides: Option<Vec<i64>>, padding: Pad) -> Rule {
    let g = pool_geometry(window.len(), strides, padding);
    windowed(what, x, window, &g, None, window_positions)
}

/// A window as rustc's rules take it (for a tensor whose shape only rustc knows): the
/// dilated extent and the stride of each spatial dimension, and the padding, `Same` (also
/// for `CIRCULAR` and `CAUSAL`, which give its sizes), `Valid` or `Unknown` (also where a
/// stride or dilation is not a literal, or the input is dilated: then only the rank is
/// checked).
pub fn window_spec(kernel: &[i64], geometry: Option<&Geometry>) -> (Vec<i64>, Vec<i64>, Pad) {
    let n = kernel.len();
    let (mut extents, mut strides) = (kernel.to_vec(), vec![1; n]);
    let Some(g) = geometry else { return (extents, strides, Pad::Unknown) };
    let mut pad = match g.padding {
        Pad::Same | Pad::Circular | Pad::Causal => Pad::Same,
        Pad::Valid => Pad::Valid,
        _ => Pad::Unknown,
    };
    for i in 0..n {
        match (g.strides.get(i, n), g.kernel_dilation.get(i, n), g.input_dilation.get(i, n)) {
            (Some(s), Some(d), Some(1)) if s >= 1 && d >= 1 && kernel[i] >= 1 => {
                strides[i] = s;
                extents[i] = (kernel[i] - 1) * d + 1;
            }
            _ => pad = Pad::Unknown,
        }
    }
    (extents, strides, pad)
}

/// The pooling function a call path names, if any, and whether it is the `_with` form that
/// takes a `PoolOptions`.
pub fn pooling(path: &syn::Path) -> Option<(String, bool)> {
    let name = library_type(path)?;
    let (base, with) = name.strip_suffix("_with").map_or((name.as_str(), false), |base| (base, true));
    ["avg_pool", "max_pool", "min_pool"].contains(&base).then(|| (format!("nn::{base}"), with))
}

/// The strides and padding a `PoolOptions` chain sets (`PoolOptions::new().strides([2, 2])
/// .padding(Padding::Same)`; unset: Flax's `None` and `VALID`), or `None` when the expression
/// is not such a chain of literals.
pub fn pool_options(expr: &syn::Expr) -> Option<(Option<Vec<i64>>, Pad)> {
    match expr {
        syn::Expr::Paren(p) => pool_options(&p.expr),
        syn::Expr::MethodCall(m) => {
            let (strides, pad) = pool_options(&m.receiver)?;
            match (m.method.to_string().as_str(), m.args.first()) {
                ("strides", Some(arg)) => Some((Some(int_list(arg)?), pad)),
                ("padding", Some(arg)) => Some((strides, padding(arg))),
                ("count_include_pad", Some(_)) => Some((strides, pad)),
                _ => None,
            }
        }
        syn::Expr::Call(c) if c.args.is_empty() => {
            let syn::Expr::Path(p) = &*c.func else { return None };
            let n = p.path.segments.len();
            let is_new = n >= 2
                && p.path.segments[n - 2].ident == "PoolOptions"
                && ["new", "default"].contains(&p.path.segments[n - 1].ident.to_string().as_str());
            is_new.then_some((None, Pad::Valid))
        }
        _ => None,
    }
}

/// Whether a call path is one of the library's shape-preserving functions (activations).
pub fn same_shape_function(path: &syn::Path) -> bool {
    const NAMES: [&str; 24] = [
        "relu",
        "relu6",
        "sigmoid",
        "tanh",
        "silu",
        "swish",
        "hard_sigmoid",
        "hard_silu",
        "hard_swish",
        "hard_tanh",
        "softplus",
        "log_sigmoid",
        "soft_sign",
        "selu",
        "elu",
        "celu",
        "leaky_relu",
        "gelu",
        "softmax",
        "log_softmax",
        "standardize",
        "normalize",
        "sparse_plus",
        "sparse_sigmoid",
    ];
    library_type(path).is_some_and(|n| NAMES.contains(&n.as_str()))
}

/// `DenseGeneral`: the batch dims, then the input dims not contracted, then `features`.
pub fn dense_general(
    features: &Option<Vec<Dim>>,
    axis: &Option<Vec<i64>>,
    batch_dims: &Option<Vec<i64>>,
    x: &Shape,
) -> Rule {
    let (Some(dims), Some(axis), Some(batch)) = (x, axis, batch_dims) else { return Ok(None) };
    let rank = dims.len();
    let normalise = |axes: &[i64]| -> Result<Vec<usize>, String> {
        axes.iter()
            .map(|&a| {
                axis_index(a, rank).ok_or_else(|| {
                    format!(
                        "nn::DenseGeneral: axis {a} is out of range for inputs of shape {} (rank {rank})",
                        show(x)
                    )
                })
            })
            .collect()
    };
    let (contracted, mut batch) = (normalise(axis)?, normalise(batch)?);
    batch.sort_unstable();
    // Malformed batch or overlapping axes are the runtime's attribute errors: not followed.
    let leading = batch.iter().enumerate().all(|(i, &b)| b == i);
    if !leading || contracted.iter().any(|a| batch.contains(a)) {
        return Ok(None);
    }
    let Some(features) = features else { return Ok(None) };
    let mut out: Vec<Dim> = batch.iter().map(|&b| dims[b].clone()).collect();
    out.extend((0..rank).filter(|d| !contracted.contains(d) && !batch.contains(d)).map(|d| dims[d].clone()));
    out.extend(features.iter().cloned());
    Ok(Some(out))
}

/// One step of an LSTM or GRU cell: the new `h` (and `c`), the carry's hidden size applied
/// to the input's last axis and broadcast with the carry.
pub fn cell_step(carry: &Shape, x: &Shape) -> Rule {
    let (Some(h), Some(dims)) = (carry, x) else { return Ok(None) };
    let (Some(hidden), false) = (h.last(), dims.is_empty()) else { return Ok(None) };
    let mut projected = dims.clone();
    *projected.last_mut().expect("not empty") = hidden.clone();
    super::ops::broadcast(&Some(projected.clone()), carry).map_err(|e| {
        format!("a recurrent cell's input {} and carry {} do not fit: {e}", show(x), show(carry))
    })
}

/// `RNN` with an int `cell_size` of `size` over `x`: `(carry h, outputs)`; `x` is `[*batch, T,
/// F]` (`[T, *batch, F]` when time-major).
pub fn rnn(size: &Dim, time_major: Option<bool>, x: &Shape) -> Result<(Shape, Shape), String> {
    let Some(dims) = x else { return Ok((None, None)) };
    if dims.len() < 2 {
        return Err(format!("nn::RNN needs inputs with a time axis and 1 feature axis, got {}", show(x)));
    }
    let Some(time_major) = time_major else { return Ok((None, None)) };
    let mut outputs = dims.clone();
    *outputs.last_mut().expect("rank at least 2") = size.clone();
    let batch = if time_major { &dims[1..dims.len() - 1] } else { &dims[..dims.len() - 2] };
    let mut carry = batch.to_vec();
    carry.push(size.clone());
    Ok((Some(carry), Some(outputs)))
}
