//! The library layers the checker follows, read from their construction
//! `nn::Layer::new(…).builder(…)…`, and their shape rules.
//!
//! Only paths through `nn` (`nn::Dense`, `flax::nn::Dense`) are the library's: a type of the
//! user's that happens to be called `Dense` is not mistaken for it.

use super::dim::{show, Dim, Shape};
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
    /// A module of the user's: its `#[shape]` contract, if any, is checked by rustc.
    User(syn::Path),
    /// Anything else.
    Unknown,
}

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
fn library_type(path: &syn::Path) -> Option<String> {
    let n = path.segments.len();
    (n >= 2 && path.segments[n - 2].ident == "nn").then(|| path.segments[n - 1].ident.to_string())
}

/// The layer a construction chain builds, or `None` when `expr` is not a construction.
/// `dim` reads a size argument (a literal, `self.features`, a size of a known tensor).
///
/// A user module is a plain type path, named as types are (capitalised), that is not one of
/// `generics` (the enclosing impl's and method's type parameters, which the `const` check
/// of its contract could not name).
pub fn construction(
    expr: &syn::Expr,
    generics: &[String],
    dim: &mut dyn FnMut(&syn::Expr) -> Dim,
) -> Option<Layer> {
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
        "Dense" => Layer::Dense { features: args.first().map_or(Dim::Unknown, |a| dim(a)) },
        "Conv" | "ConvTranspose" => Layer::Conv {
            features: args.first().map_or(Dim::Unknown, |a| dim(a)),
            kernel: args.get(1).and_then(|a| int_list(a)),
            geometry: geometry(&builders),
            transpose: name == "ConvTranspose",
        },
        "Embed" => Layer::Embed {
            num_embeddings: args.first().map_or(Dim::Unknown, |a| dim(a)),
            features: args.get(1).map_or(Dim::Unknown, |a| dim(a)),
        },
        "MultiHeadDotProductAttention" | "SelfAttention" => {
            let mut out_features = None;
            for b in builders.iter().filter(|b| b.method == "out_features") {
                out_features = Some(match b.args.first().and_then(some_arg) {
                    Some(inner) => dim(inner),
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

/// `Padding::Same`, `nn::Padding::Valid`, `Padding::Int(1)`, `1.into()`; else unknown.
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
        _ => Pad::Unknown,
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

/// Pooling (`nn::avg_pool`, `max_pool`, `min_pool`): `window` over the spatial dimensions.
pub fn pool(what: &str, x: &Shape, window: &[i64], strides: Option<Vec<i64>>, padding: Pad) -> Rule {
    let n = window.len();
    let strides = match strides {
        Some(s) if s.len() == n => PerDim::Each(s),
        Some(_) => PerDim::All(0),
        None => PerDim::All(1),
    };
    let padding = if matches!(padding, Pad::Same | Pad::Valid) { padding } else { Pad::Unknown };
    let g = Geometry { strides, input_dilation: PerDim::All(1), kernel_dilation: PerDim::All(1), padding };
    windowed(what, x, window, &g, None, window_positions)
}

/// The pooling function a call path names, if any.
pub fn pooling(path: &syn::Path) -> Option<String> {
    let name = library_type(path)?;
    ["avg_pool", "max_pool", "min_pool"].contains(&name.as_str()).then(|| format!("nn::{name}"))
}

/// Padding of a pooling call (`&Padding::Valid`).
pub fn pool_padding(expr: &syn::Expr) -> Pad {
    padding(expr)
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
