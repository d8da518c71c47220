//! Shape rules of tensor operations: broadcasting, `reshape`, `flatten`, `concatenate`,
//! and the window arithmetic of convolutions and pooling. Each returns the result shape or
//! the message of an error that holds for every value of the atoms.

use super::dim::{axis_index, count, show, Dim, Shape};

/// NumPy broadcasting of two shapes (`+`, `-`, `*`, `/`, `maximum`, …).
pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let (Some(x), Some(y)) = (a, b) else { return Ok(None) };
    let rank = x.len().max(y.len());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let from_end = rank - i;
        let dx = x.len().checked_sub(from_end).map(|j| &x[j]);
        let dy = y.len().checked_sub(from_end).map(|j| &y[j]);
        out.push(match (dx, dy) {
            (Some(p), None) | (None, Some(p)) => p.clone(),
            (Some(p), Some(q)) => broadcast_dim(p, q).ok_or_else(|| {
                format!(
                    "shapes {} and {} cannot be broadcast together: dimension {} is {p} on one side and {q} on the other",
                    show(a),
                    show(b),
                    i as i64 - rank as i64
                )
            })?,
            (None, None) => Dim::Unknown,
        });
    }
    Ok(Some(out))
}

/// One broadcast dimension, or `None` when the two can never broadcast.
fn broadcast_dim(p: &Dim, q: &Dim) -> Option<Dim> {
    if p == q || q.as_lit() == Some(1) {
        return Some(p.clone());
    }
    if p.as_lit() == Some(1) {
        return Some(q.clone());
    }
    if p.never_one() && q.never_one() && p.differs(q) {
        return None;
    }
    // Where it works at all, the side that is never 1 is the result.
    Some(if p.never_one() {
        p.clone()
    } else if q.never_one() {
        q.clone()
    } else {
        Dim::Unknown
    })
}

/// One element of a `reshape` target: a size, or `-1` (inferred).
pub enum Target {
    Size(Dim),
    Infer,
}

/// `reshape`/`view` of `input` to `target`.
pub fn reshape(input: &Shape, target: &[Target]) -> Result<Shape, String> {
    let shown = || {
        let dims: Vec<String> = target
            .iter()
            .map(|t| match t {
                Target::Size(d) => d.to_string(),
                Target::Infer => "-1".to_owned(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    };
    let given: Vec<&Dim> =
        target.iter().filter_map(|t| if let Target::Size(d) = t { Some(d) } else { None }).collect();
    let inferred = target.len() - given.len();
    if inferred > 1 {
        return Err(format!("reshape to {} infers more than one dimension (-1)", shown()));
    }
    let known: Dim = given.iter().fold(Dim::lit(1), |acc, d| acc.mul(d));
    let total = input.as_ref().map_or(Dim::Unknown, |dims| count(dims));
    let elements = |d: &Dim| match d.as_lit() {
        Some(n) => format!("{n} element{}", if n == 1 { "" } else { "s" }),
        None => format!("{d} elements"),
    };
    let fill = if inferred == 0 {
        if total.differs(&known) {
            return Err(format!(
                "cannot reshape {} ({}) to {} ({})",
                show(input),
                elements(&total),
                shown(),
                elements(&known)
            ));
        }
        None
    } else {
        let quotient = total.div(&known);
        let provably_inexact = match (&total, &known) {
            (Dim::Term { coef: a, atoms: x }, Dim::Term { coef: b, atoms: y }) => {
                x == y && *b != 0 && a % b != 0
            }
            _ => false,
        };
        if provably_inexact || known.as_lit() == Some(0) {
            return Err(format!(
                "cannot reshape {} ({}) to {}: {} is not a multiple of {}",
                show(input),
                elements(&total),
                shown(),
                total,
                known
            ));
        }
        Some(quotient.unwrap_or(Dim::Unknown))
    };
    let mut fill = fill;
    Ok(Some(
        target
            .iter()
            .map(|t| match t {
                Target::Size(d) => d.clone(),
                Target::Infer => fill.take().unwrap_or(Dim::Unknown),
            })
            .collect(),
    ))
}

/// `flatten(start, end)`: the product of the dimensions from `start` to `end` (inclusive).
pub fn flatten(input: &Shape, start: i64, end: i64) -> Shape {
    let dims = input.as_ref()?;
    if dims.is_empty() {
        return Some(vec![Dim::lit(1)]);
    }
    let (s, e) = (axis_index(start, dims.len())?, axis_index(end, dims.len())?);
    if s > e {
        return None;
    }
    let mut out = dims[..s].to_vec();
    out.push(count(&dims[s..=e]));
    out.extend_from_slice(&dims[e + 1..]);
    Some(out)
}

/// `concatenate` along `axis`: ranks equal, the other dimensions equal.
pub fn concatenate(parts: &[Shape], axis: i64) -> Result<Shape, String> {
    let Some(known) = parts.iter().map(Option::as_ref).collect::<Option<Vec<_>>>() else { return Ok(None) };
    let Some(first) = known.first() else { return Ok(None) };
    let rank = first.len();
    let all: Vec<String> = parts.iter().map(show).collect();
    if let Some(other) = known.iter().find(|d| d.len() != rank) {
        return Err(format!(
            "cannot concatenate {}: ranks differ ({} and {})",
            all.join(" and "),
            rank,
            other.len()
        ));
    }
    let Some(a) = axis_index(axis, rank) else {
        return Err(format!(
            "cannot concatenate {} along axis {axis}: they have rank {rank}",
            all.join(" and ")
        ));
    };
    let mut out = first.to_vec();
    for dims in &known[1..] {
        for i in (0..rank).filter(|&i| i != a) {
            if out[i].differs(&dims[i]) {
                return Err(format!(
                    "cannot concatenate {} along axis {axis}: dimension {i} differs ({} and {})",
                    all.join(" and "),
                    out[i],
                    dims[i]
                ));
            }
            if out[i] == Dim::Unknown {
                out[i] = dims[i].clone();
            }
        }
        out[a] = out[a].add(&dims[a]);
    }
    Ok(Some(out))
}

/// How windows are padded (Flax's `padding`), as far as the syntax shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Pad {
    Same,
    Valid,
    Circular,
    Causal,
    Int(i64),
    Unknown,
}

/// The window geometry of one spatial dimension.
pub struct Window {
    pub size: i64,
    pub stride: i64,
    pub input_dilation: i64,
    pub kernel_dilation: i64,
}

/// A `VALID` window that does not fit: its extent and the input size.
pub struct TooLarge {
    pub extent: i64,
    pub input: i64,
}

/// The number of positions of one spatial dimension (XLA's shape rule, as the runtime's
/// `window_count`), or the `VALID` window that does not fit.
pub fn window_positions(input: &Dim, w: &Window, pad: &Pad) -> Result<Dim, TooLarge> {
    let extent = (w.size - 1) * w.kernel_dilation + 1;
    let Some(n) = input.as_lit() else {
        let same_size = matches!(pad, Pad::Same | Pad::Circular | Pad::Causal) && w.input_dilation == 1;
        return Ok(if same_size && w.stride == 1 {
            input.clone()
        } else if same_size && *pad == Pad::Same {
            input.div(&Dim::lit(w.stride)).unwrap_or(Dim::Unknown)
        } else {
            Dim::Unknown
        });
    };
    let dilated = if n == 0 { 0 } else { (n - 1) * w.input_dilation + 1 };
    let padded = match pad {
        Pad::Same => return Ok(Dim::lit((dilated + w.stride - 1) / w.stride)),
        Pad::Valid => dilated,
        Pad::Circular | Pad::Causal => dilated + extent - 1,
        Pad::Int(p) => dilated + 2 * p,
        Pad::Unknown => return Ok(Dim::Unknown),
    };
    if padded < extent {
        if *pad == Pad::Valid {
            return Err(TooLarge { extent, input: n });
        }
        return Ok(Dim::lit(0));
    }
    Ok(Dim::lit((padded - extent) / w.stride + 1))
}

/// The output positions of one dimension of a transposed convolution (`lax.conv_transpose`:
/// `in × stride` for `SAME`, `in × stride + max(extent − stride, 0)` for `VALID`).
pub fn transposed_positions(input: &Dim, w: &Window, pad: &Pad) -> Result<Dim, TooLarge> {
    let extent = (w.size - 1) * w.kernel_dilation + 1;
    let grown = input.mul(&Dim::lit(w.stride));
    Ok(match pad {
        Pad::Same => grown,
        Pad::Valid if extent <= w.stride => grown,
        Pad::Valid => grown.add(&Dim::lit(extent - w.stride)),
        _ => Dim::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(dims: &[Dim]) -> Shape {
        Some(dims.to_vec())
    }

    #[test]
    fn broadcasting() {
        let b = Dim::atom("B");
        let out = broadcast(&s(&[b.clone(), Dim::lit(64)]), &s(&[Dim::lit(64)])).unwrap();
        assert_eq!(show(&out), "[B, 64]");
        assert!(broadcast(&s(&[b.clone(), Dim::lit(64)]), &s(&[b.clone(), Dim::lit(32)])).is_err());
        assert!(broadcast(&Some(vec![b]), &s(&[Dim::lit(32)])).is_ok(), "B may be 1 or 32");
    }

    #[test]
    fn reshapes() {
        let b = Dim::atom("B");
        let x = s(&[b.clone(), Dim::lit(784)]);
        let out =
            reshape(&x, &[Target::Infer, Target::Size(Dim::lit(28)), Target::Size(Dim::lit(28))]).unwrap();
        assert_eq!(show(&out), "[B, 28, 28]");
        assert!(reshape(&x, &[Target::Infer, Target::Size(Dim::lit(27))]).is_ok(), "B may be 27");
        let four = s(&[Dim::lit(4), Dim::lit(784)]);
        assert!(reshape(&four, &[Target::Infer, Target::Size(Dim::lit(27))]).is_err());
        assert!(reshape(&x, &[b.clone(), Dim::lit(785)].map(Target::Size)).is_err());
        assert!(reshape(&x, &[Dim::lit(10), Dim::lit(784)].map(Target::Size)).is_ok(), "B may be 10");
    }

    #[test]
    fn windows() {
        let w = Window { size: 3, stride: 2, input_dilation: 1, kernel_dilation: 1 };
        assert_eq!(window_positions(&Dim::lit(28), &w, &Pad::Same).ok(), Some(Dim::lit(14)));
        assert_eq!(window_positions(&Dim::lit(28), &w, &Pad::Valid).ok(), Some(Dim::lit(13)));
        assert!(window_positions(&Dim::lit(2), &w, &Pad::Valid).is_err());
        assert_eq!(window_positions(&Dim::atom("H"), &w, &Pad::Valid).ok(), Some(Dim::Unknown));
        assert_eq!(transposed_positions(&Dim::lit(8), &w, &Pad::Same).ok(), Some(Dim::lit(16)));
        assert_eq!(transposed_positions(&Dim::lit(8), &w, &Pad::Valid).ok(), Some(Dim::lit(17)));
    }
}
