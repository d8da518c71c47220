//! Shape rules of the tensor methods that move, contract, reduce or slice axes: `permute`,
//! `transpose`, `matmul`, reductions over axes (with `keepdim`), `narrow`/`slice`/`select`,
//! indexing with `i(…)`, `unsqueeze`/`squeeze_dim` and `Tensor::stack`. Each returns the
//! result (unknown where a size or axis is not a literal) or an error that holds for every
//! value of the atoms; the errors are the ones libtorch raises for the same call.

use super::dim::{axis_index, show, Dim, Shape};

/// A rule's result: the shape, or the error message.
pub type Rule = Result<Shape, String>;

fn axis_error(what: &str, axis: i64, x: &Shape, rank: usize) -> String {
    format!("{what}: dimension {axis} is out of range for {} of rank {rank}", show(x))
}

/// `permute(axes)`: the axes in the given order, each once.
pub fn permute(x: &Shape, axes: &[i64]) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    if axes.len() != dims.len() {
        return Err(format!(
            "permute: {} has rank {}, but the order {axes:?} names {} axes",
            show(x),
            dims.len(),
            axes.len()
        ));
    }
    let mut seen = vec![false; dims.len()];
    let mut out = Vec::with_capacity(dims.len());
    for &a in axes {
        let i = axis_index(a, dims.len()).ok_or_else(|| axis_error("permute", a, x, dims.len()))?;
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!("permute: the order {axes:?} repeats dimension {a} of {}", show(x)));
        }
        out.push(dims[i].clone());
    }
    Ok(Some(out))
}

/// `transpose(a, b)` (also `swapaxes`): two axes swapped.
pub fn transpose(x: &Shape, a: i64, b: i64) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    let i = axis_index(a, dims.len()).ok_or_else(|| axis_error("transpose", a, x, dims.len()))?;
    let j = axis_index(b, dims.len()).ok_or_else(|| axis_error("transpose", b, x, dims.len()))?;
    let mut out = dims.clone();
    out.swap(i, j);
    Ok(Some(out))
}

/// `matmul` (NumPy's rules): vectors are promoted and their axis removed again, the batch
/// dimensions broadcast, `[…, n, k] @ […, k, m] → […, n, m]`.
pub fn matmul(a: &Shape, b: &Shape) -> Rule {
    let (Some(x), Some(y)) = (a, b) else { return Ok(None) };
    if x.is_empty() || y.is_empty() {
        return Err(format!("matmul needs operands of rank at least 1, got {} and {}", show(a), show(b)));
    }
    let (k_left, k_right) = (&x[x.len() - 1], if y.len() == 1 { &y[0] } else { &y[y.len() - 2] });
    if k_left.differs(k_right) {
        return Err(format!(
            "matmul of {} and {}: the contracted dimensions differ ({k_left} and {k_right})",
            show(a),
            show(b)
        ));
    }
    let batch_x = if x.len() > 2 { x[..x.len() - 2].to_vec() } else { Vec::new() };
    let batch_y = if y.len() > 2 { y[..y.len() - 2].to_vec() } else { Vec::new() };
    let Some(mut out) = super::ops::broadcast(&Some(batch_x), &Some(batch_y))
        .map_err(|e| format!("matmul of {} and {}: the batch {e}", show(a), show(b)))?
    else {
        return Ok(None);
    };
    if x.len() >= 2 {
        out.push(x[x.len() - 2].clone());
    }
    if y.len() >= 2 {
        out.push(y[y.len() - 1].clone());
    }
    Ok(Some(out))
}

/// A reduction over `axes` (`mean_dim`, `sum_dim_intlist`, `amax`, …): each removed, or 1 with
/// `keepdim`. `None` axes: all of them.
pub fn reduce(what: &str, x: &Shape, axes: Option<&[i64]>, keepdim: bool) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    let mut reduced = vec![axes.is_none(); dims.len()];
    for &a in axes.unwrap_or(&[]) {
        // libtorch reduces a scalar over dimension 0 or -1.
        if dims.is_empty() && (a == 0 || a == -1) {
            continue;
        }
        let i = axis_index(a, dims.len()).ok_or_else(|| axis_error(what, a, x, dims.len()))?;
        reduced[i] = true;
    }
    let out = dims
        .iter()
        .zip(&reduced)
        .filter_map(|(d, &r)| match (r, keepdim) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::lit(1)),
            (true, false) => None,
        })
        .collect();
    Ok(Some(out))
}

/// The number of elements `start..end` (Python's slice rules, clamped) of a literal size.
fn slice_len(size: &Dim, start: Option<i64>, end: Option<i64>, step: i64) -> Dim {
    let Some(n) = size.as_lit() else {
        // The whole axis keeps its size whatever it is.
        return if start.unwrap_or(0) == 0 && end.is_none() && step == 1 {
            size.clone()
        } else {
            Dim::Unknown
        };
    };
    let clamp = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
    let (s, e) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(n)));
    Dim::lit(if e > s && step > 0 { (e - s + step - 1) / step } else { 0 })
}

/// `narrow(axis, start, length)`: the axis becomes `length`; past the end is an error.
pub fn narrow(x: &Shape, axis: i64, start: Option<i64>, length: &Dim) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    let i = axis_index(axis, dims.len()).ok_or_else(|| axis_error("narrow", axis, x, dims.len()))?;
    if let (Some(n), Some(s), Some(l)) = (dims[i].as_lit(), start, length.as_lit()) {
        let s = if s < 0 { s + n } else { s };
        if s < 0 || s + l > n {
            return Err(format!(
                "narrow: start {s} and length {l} exceed dimension {axis} of size {n} of {}",
                show(x)
            ));
        }
    }
    let mut out = dims.clone();
    out[i] = length.clone();
    Ok(Some(out))
}

/// `slice(axis, start, end, step)`.
pub fn slice(x: &Shape, axis: i64, start: Option<i64>, end: Option<i64>, step: i64) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    let i = axis_index(axis, dims.len()).ok_or_else(|| axis_error("slice", axis, x, dims.len()))?;
    let mut out = dims.clone();
    out[i] = slice_len(&dims[i], start, end, step);
    Ok(Some(out))
}

/// `select(axis, index)`: the axis removed; an index past a literal size is an error.
pub fn select(x: &Shape, axis: i64, index: Option<i64>) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    let i = axis_index(axis, dims.len()).ok_or_else(|| axis_error("select", axis, x, dims.len()))?;
    if let (Some(n), Some(k)) = (dims[i].as_lit(), index) {
        if k >= n || k < -n {
            return Err(format!(
                "select: index {k} is out of range for dimension {axis} of size {n} of {}",
                show(x)
            ));
        }
    }
    let mut out = dims.clone();
    out.remove(i);
    Ok(Some(out))
}

/// One item of `x.i((…))`.
pub enum Index {
    /// An integer: the axis is removed.
    At(Option<i64>),
    /// A range `a..b` (`..` is the whole axis).
    Range { start: Option<i64>, end: Option<i64> },
    /// Anything else (a tensor of indices, `NewAxis`): nothing is concluded.
    Unknown,
}

/// `x.i((items…))`: the leading axes indexed, the rest kept.
pub fn index(x: &Shape, items: &[Index]) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    if items.iter().any(|i| matches!(i, Index::Unknown)) {
        return Ok(None);
    }
    if items.len() > dims.len() {
        return Err(format!("i(…): {} indices for {} of rank {}", items.len(), show(x), dims.len()));
    }
    let mut out = Vec::new();
    for (axis, (d, item)) in dims.iter().zip(items).enumerate() {
        match item {
            Index::At(Some(k)) if d.as_lit().is_some_and(|n| *k >= n || *k < -n) => {
                return Err(format!("i(…): index {k} is out of range for dimension {axis} of {}", show(x)));
            }
            Index::At(_) => {}
            Index::Range { start, end } => out.push(slice_len(d, *start, *end, 1)),
            Index::Unknown => unreachable!("checked above"),
        }
    }
    out.extend_from_slice(&dims[items.len()..]);
    Ok(Some(out))
}

/// `unsqueeze(axis)`: a new axis of size 1 (`axis` counts in the result's rank).
pub fn unsqueeze(x: &Shape, axis: i64) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    let i =
        axis_index(axis, dims.len() + 1).ok_or_else(|| axis_error("unsqueeze", axis, x, dims.len() + 1))?;
    let mut out = dims.clone();
    out.insert(i, Dim::lit(1));
    Ok(Some(out))
}

/// `squeeze_dim(axis)`: the axis removed if it is 1 (unknown when it may or may not be).
pub fn squeeze_dim(x: &Shape, axis: i64) -> Rule {
    let Some(dims) = x else { return Ok(None) };
    if dims.is_empty() && (axis == 0 || axis == -1) {
        return Ok(Some(Vec::new()));
    }
    let i = axis_index(axis, dims.len()).ok_or_else(|| axis_error("squeeze_dim", axis, x, dims.len()))?;
    let mut out = dims.clone();
    match dims[i].as_lit() {
        Some(1) => {
            out.remove(i);
        }
        Some(_) => {}
        None if dims[i].never_one() => {}
        None => return Ok(None),
    }
    Ok(Some(out))
}

/// `Tensor::stack(parts, axis)`: equal shapes, a new axis of their count.
pub fn stack(parts: &[Shape], axis: i64) -> Rule {
    let Some(known) = parts.iter().map(Option::as_ref).collect::<Option<Vec<_>>>() else { return Ok(None) };
    let Some(first) = known.first() else { return Ok(None) };
    let all: Vec<String> = parts.iter().map(show).collect();
    for other in &known[1..] {
        let differs = other.len() != first.len() || first.iter().zip(other.iter()).any(|(a, b)| a.differs(b));
        if differs {
            return Err(format!("cannot stack {}: stack needs equal shapes", all.join(" and ")));
        }
    }
    let i = axis_index(axis, first.len() + 1).ok_or_else(|| {
        format!(
            "cannot stack {} along axis {axis}: the result has rank {}",
            all.join(" and "),
            first.len() + 1
        )
    })?;
    let mut out = first.to_vec();
    out.insert(i, Dim::lit(parts.len() as i64));
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(dims: &[Dim]) -> Shape {
        Some(dims.to_vec())
    }

    #[test]
    fn layouts() {
        let (b, t) = (Dim::atom("B"), Dim::atom("T"));
        let x = s(&[b.clone(), t.clone(), Dim::lit(64)]);
        assert_eq!(show(&permute(&x, &[0, 2, 1]).unwrap()), "[B, 64, T]");
        assert!(permute(&x, &[0, 1]).is_err());
        assert!(permute(&x, &[0, 1, 1]).is_err());
        assert_eq!(show(&transpose(&x, 1, 2).unwrap()), "[B, 64, T]");
        assert_eq!(show(&reduce("mean_dim", &x, Some(&[1]), true).unwrap()), "[B, 1, 64]");
        assert_eq!(show(&reduce("mean_dim", &x, Some(&[-1]), false).unwrap()), "[B, T]");
        assert_eq!(show(&reduce("sum", &x, None, false).unwrap()), "[]");
        assert!(reduce("mean_dim", &x, Some(&[3]), false).is_err());
    }

    #[test]
    fn matmuls() {
        let b = Dim::atom("B");
        let q = s(&[b.clone(), Dim::lit(8), Dim::lit(16), Dim::lit(32)]);
        let k = s(&[b.clone(), Dim::lit(8), Dim::lit(32), Dim::lit(16)]);
        assert_eq!(show(&matmul(&q, &k).unwrap()), "[B, 8, 16, 16]");
        assert!(matmul(&q, &q).is_err(), "32 against 16");
        assert_eq!(show(&matmul(&s(&[b.clone(), Dim::lit(4)]), &s(&[Dim::lit(4)])).unwrap()), "[B]");
        assert!(matmul(&s(&[b.clone(), Dim::lit(4)]), &s(&[b, Dim::lit(3)])).is_ok(), "B may be 4");
    }

    #[test]
    fn slices() {
        let b = Dim::atom("B");
        let x = s(&[b.clone(), Dim::lit(10), Dim::lit(64)]);
        assert_eq!(show(&narrow(&x, 1, Some(0), &Dim::lit(9)).unwrap()), "[B, 9, 64]");
        assert!(narrow(&x, 1, Some(2), &Dim::lit(9)).is_err());
        assert_eq!(show(&slice(&x, 1, Some(1), None, 2).unwrap()), "[B, 5, 64]");
        assert_eq!(show(&select(&x, 1, Some(0)).unwrap()), "[B, 64]");
        assert!(select(&x, 1, Some(10)).is_err());
        let items = [Index::Range { start: None, end: None }, Index::At(Some(-1))];
        assert_eq!(show(&index(&x, &items).unwrap()), "[B, 64]");
        assert_eq!(show(&unsqueeze(&x, -1).unwrap()), "[B, 10, 64, 1]");
        assert_eq!(show(&squeeze_dim(&unsqueeze(&x, 1).unwrap(), 1).unwrap()), "[B, 10, 64]");
        assert_eq!(show(&stack(&[x.clone(), x.clone()], 0).unwrap()), "[2, B, 10, 64]");
    }
}
