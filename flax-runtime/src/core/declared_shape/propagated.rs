//! Shapes that rustc follows while compiling a declared parent: the output of a declared child
//! (read from the child's contract, so across crates too) and what the parent's body does with
//! it next.
//!
//! The macro follows a body with symbolic sizes but cannot read another module's declaration;
//! rustc can. So from a child's call on, the macro emits `const` items that compute a [`Known`]
//! shape with these rules and `const _` checks that panic with a message (a compile error whose
//! span is the user's expression). Only literal sizes are compared here (a symbol or field is
//! [`Dim::Any`]), so, as in the macro, only differences that hold for every size are errors.
//! Every rule is total: what it cannot follow is [`Known::UNKNOWN`].

use super::{find, Bindings, Contract, Dim};

/// The highest rank followed at compile time (beyond it, a shape is unknown).
pub const MAX_RANK: usize = 8;

/// A shape as rustc knows it while compiling: each dimension a size or [`Dim::Any`], or
/// nothing at all (not even the rank).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    dims: [Dim; MAX_RANK],
    rank: usize,
    known: bool,
}

impl Known {
    /// Nothing is known.
    pub const UNKNOWN: Known = Known { dims: [Dim::Any; MAX_RANK], rank: 0, known: false };

    /// A shape with these dimensions (sizes and `Any`; any other kind of dimension is `Any`).
    pub const fn of(dims: &[Dim]) -> Known {
        if dims.len() > MAX_RANK {
            return Known::UNKNOWN;
        }
        let mut out = Known { dims: [Dim::Any; MAX_RANK], rank: dims.len(), known: true };
        let mut i = 0;
        while i < dims.len() {
            if let Dim::Size(n) = dims[i] {
                out.dims[i] = Dim::Size(n);
            }
            i += 1;
        }
        out
    }

    /// The size at `i` (`None`: not a known size).
    const fn size(&self, i: usize) -> Option<i64> {
        match self.dims[i] {
            Dim::Size(n) => Some(n),
            _ => None,
        }
    }

    /// The dimension at `axis` (negative counts from the end), when the rank is known.
    const fn axis(&self, axis: i64) -> Option<usize> {
        let rank = self.rank as i64;
        let a = if axis < 0 { axis + rank } else { axis };
        if self.known && a >= 0 && a < rank {
            Some(a as usize)
        } else {
            None
        }
    }
}

/// A compile-time error message, built in a fixed buffer (longer ones are cut).
pub struct Message {
    bytes: [u8; 1024],
    len: usize,
}

impl Message {
    const fn new() -> Self {
        Message { bytes: [0; 1024], len: 0 }
    }

    const fn str(mut self, s: &str) -> Self {
        let s = s.as_bytes();
        let mut i = 0;
        // Stop at a character boundary so the text stays UTF-8.
        while i < s.len() && self.len < self.bytes.len() - 4 {
            self.bytes[self.len] = s[i];
            self.len += 1;
            i += 1;
        }
        while i < s.len() && self.len > 0 && (s[i] & 0xC0) == 0x80 {
            i += 1;
            self.len -= 1;
        }
        self
    }

    const fn int(mut self, n: i64) -> Self {
        if n < 0 {
            self = self.str("-");
        }
        let mut digits = [0u8; 20];
        let (mut v, mut k) = (n.unsigned_abs(), 0);
        loop {
            digits[k] = b'0' + (v % 10) as u8;
            k += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while k > 0 && self.len < self.bytes.len() {
            k -= 1;
            self.bytes[self.len] = digits[k];
            self.len += 1;
        }
        self
    }

    /// `[_, 785]` (`[?]` when unknown): `_` for a dimension rustc does not know.
    const fn shape(mut self, x: &Known) -> Self {
        if !x.known {
            return self.str("[?]");
        }
        self = self.str("[");
        let mut i = 0;
        while i < x.rank {
            if i > 0 {
                self = self.str(", ");
            }
            self = match x.size(i) {
                Some(n) => self.int(n),
                None => self.str("_"),
            };
            i += 1;
        }
        self.str("]")
    }

    /// The text (for `panic!` in a `const`).
    pub const fn as_str(&self) -> &str {
        let (text, _) = self.bytes.split_at(self.len);
        // SAFETY: only whole `str`s (cut at a character boundary) and ASCII digits are written.
        unsafe { core::str::from_utf8_unchecked(text) }
    }
}

/// The symbols of `contract` bound by the argument shapes `given`, or `None` when the
/// arguments cannot satisfy it.
const fn bind(contract: &Contract, given: &[Known]) -> Option<Bindings> {
    let mut bindings = Bindings::new();
    let mut i = 0;
    while i < contract.inputs.len() {
        let input = &contract.inputs[i];
        i += 1;
        if input.position >= given.len() || !given[input.position].known {
            continue;
        }
        let x = &given[input.position];
        if x.rank != input.dims.len() {
            return None;
        }
        let mut d = 0;
        while d < x.rank {
            let declared = input.dims[d];
            let Some(size) = x.size(d) else {
                d += 1;
                continue;
            };
            d += 1;
            match declared {
                Dim::Size(want) | Dim::Value(_, want) if want != size => return None,
                Dim::Sym(name) if !bindings.unify(name, size) => return None,
                _ => {}
            }
        }
    }
    Some(bindings)
}

/// Whether a call of `method` with arguments of shapes `given` (after the scope) can satisfy
/// its declaration among `contracts` (true when it has none).
pub const fn accepts(contracts: &[Contract], method: &str, given: &[Known]) -> bool {
    match find(contracts, method) {
        Some(contract) => bind(contract, given).is_some(),
        None => true,
    }
}

/// The error of a call of `callee` (`Type::method`) whose arguments, written `texts`, have
/// shapes `given` (shown as `shown` where the macro knows them symbolically, else as rustc
/// knows them), if its declaration among `contracts` rejects them.
pub const fn check_call(
    contracts: &[Contract],
    method: &str,
    callee: &str,
    texts: &[&str],
    shown: &[&str],
    given: &[Known],
) -> Option<Message> {
    let Some(contract) = find(contracts, method) else { return None };
    if bind(contract, given).is_some() {
        return None;
    }
    let mut m = Message::new().str("shape mismatch: this call passes ");
    let (mut i, mut first) = (0, true);
    while i < given.len() && i < texts.len() && i < shown.len() {
        if given[i].known {
            m = m.str(if first { "`" } else { ", `" }).str(texts[i]).str("` of shape ");
            m = if shown[i].is_empty() { m.shape(&given[i]) } else { m.str(shown[i]) };
            first = false;
        }
        i += 1;
    }
    Some(m.str(" to `").str(callee).str("`, which declares #[shape(").str(contract.text).str(")]"))
}

/// The output of a call of `method` with arguments of shapes `given`: the declared output
/// with the symbols the arguments bind (unknown when undeclared or rejected).
pub const fn output(contracts: &[Contract], method: &str, given: &[Known]) -> Known {
    let Some(contract) = find(contracts, method) else { return Known::UNKNOWN };
    let Some(declared) = contract.output else { return Known::UNKNOWN };
    let Some(bindings) = bind(contract, given) else { return Known::UNKNOWN };
    if declared.len() > MAX_RANK {
        return Known::UNKNOWN;
    }
    let mut out = Known { dims: [Dim::Any; MAX_RANK], rank: declared.len(), known: true };
    let mut i = 0;
    while i < declared.len() {
        out.dims[i] = match declared[i] {
            Dim::Size(n) | Dim::Value(_, n) => Dim::Size(n),
            Dim::Sym(name) => match bindings.get(name) {
                Some(n) => Dim::Size(n),
                None => Dim::Any,
            },
            _ => Dim::Any,
        };
        i += 1;
    }
    out
}

/// `x` with its last dimension `last` (`Dense`, attention's `out_features`).
pub const fn with_last(x: Known, last: Dim) -> Known {
    if !x.known || x.rank == 0 {
        return Known::UNKNOWN;
    }
    let mut out = x;
    out.dims[x.rank - 1] = match last {
        Dim::Size(n) => Dim::Size(n),
        _ => Dim::Any,
    };
    out
}

/// NumPy broadcasting: the result, or unknown.
pub const fn broadcast(a: Known, b: Known) -> Known {
    if !a.known || !b.known {
        return Known::UNKNOWN;
    }
    let rank = if a.rank > b.rank { a.rank } else { b.rank };
    let mut out = Known { dims: [Dim::Any; MAX_RANK], rank, known: true };
    let mut i = 0;
    while i < rank {
        let from_end = rank - i;
        let p = if a.rank >= from_end { a.size(a.rank - from_end) } else { Some(1) };
        let q = if b.rank >= from_end { b.size(b.rank - from_end) } else { Some(1) };
        out.dims[i] = match (p, q) {
            (Some(1), Some(n)) | (Some(n), Some(1)) => Dim::Size(n),
            (Some(m), Some(n)) if m == n => Dim::Size(n),
            // `Any` may be 1: only a size other than 1 is the result for sure.
            (Some(n), None) | (None, Some(n)) if n != 1 => Dim::Size(n),
            _ => Dim::Any,
        };
        i += 1;
    }
    out
}

/// The error of broadcasting `a` and `b` (`op`: the user's expression), if two sizes differ
/// and neither is 1.
pub const fn check_broadcast(a: Known, b: Known) -> Option<Message> {
    if !a.known || !b.known {
        return None;
    }
    let rank = if a.rank > b.rank { a.rank } else { b.rank };
    let mut i = 1;
    while i <= rank && i <= a.rank && i <= b.rank {
        if let (Some(p), Some(q)) = (a.size(a.rank - i), b.size(b.rank - i)) {
            if p != q && p != 1 && q != 1 {
                let m = Message::new().str("shapes ").shape(&a).str(" and ").shape(&b);
                let m = m.str(" cannot be broadcast together: dimension -").int(i as i64);
                return Some(m.str(" is ").int(p).str(" on one side and ").int(q).str(" on the other"));
            }
        }
        i += 1;
    }
    None
}

/// `concatenate(parts, axis)`: the result, or unknown.
pub const fn concatenate(parts: &[Known], axis: i64) -> Known {
    if parts.is_empty() || check_concatenate(parts, axis).is_some() {
        return Known::UNKNOWN;
    }
    let mut i = 0;
    while i < parts.len() {
        if !parts[i].known {
            return Known::UNKNOWN;
        }
        i += 1;
    }
    let Some(a) = parts[0].axis(axis) else { return Known::UNKNOWN };
    let mut out = parts[0];
    let mut p = 1;
    while p < parts.len() {
        let mut d = 0;
        while d < out.rank {
            out.dims[d] = match (out.size(d), parts[p].size(d)) {
                (Some(x), Some(y)) if d == a => Dim::Size(x + y),
                (Some(x), _) if d != a => Dim::Size(x),
                (None, Some(y)) if d != a => Dim::Size(y),
                _ => Dim::Any,
            };
            d += 1;
        }
        p += 1;
    }
    out
}

/// The error of concatenating `parts` along `axis`, if their ranks or other sizes differ.
pub const fn check_concatenate(parts: &[Known], axis: i64) -> Option<Message> {
    let mut p = 0;
    while p < parts.len() {
        let mut q = p + 1;
        while q < parts.len() {
            let (x, y) = (&parts[p], &parts[q]);
            if x.known && y.known {
                let mut bad = x.rank != y.rank;
                let a = x.axis(axis);
                let mut d = 0;
                while !bad && d < x.rank {
                    if let (Some(m), Some(n)) = (x.size(d), y.size(d)) {
                        bad = m != n && !matches!(a, Some(a) if a == d);
                    }
                    d += 1;
                }
                if bad || a.is_none() {
                    let m = Message::new().str("cannot concatenate ").shape(x).str(" and ").shape(y);
                    return Some(m.str(" along axis ").int(axis));
                }
            }
            q += 1;
        }
        p += 1;
    }
    None
}

/// The error of returning `got` from `method`, declared `#[shape(text)]` with output
/// `declared`, if a size or the rank differs.
pub const fn check_output(method: &str, text: &str, declared: &[Dim], got: Known) -> Option<Message> {
    if !got.known {
        return None;
    }
    let mut bad = got.rank != declared.len();
    let mut i = 0;
    while !bad && i < got.rank {
        if let (Some(n), Dim::Size(want)) = (got.size(i), declared[i]) {
            bad = n != want;
        }
        i += 1;
    }
    if !bad {
        return None;
    }
    let m = Message::new().str("shape mismatch: `").str(method).str("` is declared #[shape(").str(text);
    Some(m.str(")], but this returns ").shape(&got))
}

/// `x` with its axes in the order `axes` (`permute`), or unknown.
pub const fn permute(x: Known, axes: &[i64]) -> Known {
    if !x.known || axes.len() != x.rank {
        return Known::UNKNOWN;
    }
    let mut out = x;
    let mut i = 0;
    while i < axes.len() {
        let Some(a) = x.axis(axes[i]) else { return Known::UNKNOWN };
        out.dims[i] = x.dims[a];
        i += 1;
    }
    out
}

/// `x` with axes `a` and `b` swapped (`transpose`), or unknown.
pub const fn transpose(x: Known, a: i64, b: i64) -> Known {
    let (Some(i), Some(j)) = (x.axis(a), x.axis(b)) else { return Known::UNKNOWN };
    let mut out = x;
    out.dims[i] = x.dims[j];
    out.dims[j] = x.dims[i];
    out
}

/// `x` reduced over `axes` (`mean_dim`, `sum_dim_intlist`): those dimensions are 1 with
/// `keepdim`, else removed.
pub const fn reduce(x: Known, axes: &[i64], keepdim: bool) -> Known {
    if !x.known {
        return Known::UNKNOWN;
    }
    let mut reduced = [false; MAX_RANK];
    let mut i = 0;
    while i < axes.len() {
        let Some(a) = x.axis(axes[i]) else { return Known::UNKNOWN };
        reduced[a] = true;
        i += 1;
    }
    let mut out = Known { dims: [Dim::Any; MAX_RANK], rank: 0, known: true };
    let mut d = 0;
    while d < x.rank {
        if !reduced[d] {
            out.dims[out.rank] = x.dims[d];
            out.rank += 1;
        } else if keepdim {
            out.dims[out.rank] = Dim::Size(1);
            out.rank += 1;
        }
        d += 1;
    }
    out
}

/// `x.flatten(start, end)`, or unknown.
pub const fn flatten(x: Known, start: i64, end: i64) -> Known {
    let (Some(s), Some(e)) = (x.axis(start), x.axis(end)) else { return Known::UNKNOWN };
    if s > e {
        return Known::UNKNOWN;
    }
    let mut out = Known { dims: [Dim::Any; MAX_RANK], rank: x.rank - (e - s), known: true };
    let mut product = Some(1i64);
    let mut d = 0;
    while d < x.rank {
        if d < s {
            out.dims[d] = x.dims[d];
        } else if d <= e {
            product = match (product, x.size(d)) {
                (Some(p), Some(n)) => p.checked_mul(n),
                _ => None,
            };
            if d == e {
                out.dims[s] = match product {
                    Some(p) => Dim::Size(p),
                    None => Dim::Any,
                };
            }
        } else {
            out.dims[d - (e - s)] = x.dims[d];
        }
        d += 1;
    }
    out
}

/// How a window is padded, as far as the compile-time rules follow it (`CIRCULAR` and
/// `CAUSAL` give `SAME`'s sizes; anything else is `Unknown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowPad {
    /// `ceil(n / stride)` positions.
    Same,
    /// `(n - extent) / stride + 1` positions; a window larger than its input is an error.
    Valid,
    /// Sizes not followed.
    Unknown,
}

/// The error of a window op (`what`: `nn::Conv`, `nn::max_pool`) with `extents` (the dilated
/// window, one per spatial dimension) on `x`: a rank without room for the spatial
/// dimensions and the features, or a `VALID` window larger than its input.
pub const fn check_window(what: &str, x: Known, extents: &[i64], pad: WindowPad) -> Option<Message> {
    let n = extents.len();
    if !x.known {
        return None;
    }
    if x.rank < n + 1 {
        let m = Message::new()
            .str(what)
            .str(" with a ")
            .int(n as i64)
            .str("-D window takes inputs of rank at least ");
        return Some(m.int(n as i64 + 1).str(" (*batch, spatial dims, features); got ").shape(&x));
    }
    let first = x.rank - n - 1;
    let mut i = 0;
    while i < n {
        if let (Some(size), WindowPad::Valid) = (x.size(first + i), pad) {
            if extents[i] > size {
                let m = Message::new().str(what).str(": the VALID window of extent ").int(extents[i]);
                let m = m.str(" does not fit dimension ").int((first + i) as i64).str(" of size ").int(size);
                return Some(
                    m.str(" of the input ").shape(&x).str(" (Flax would return a zero-size output)"),
                );
            }
        }
        i += 1;
    }
    None
}

/// The output of a window op over `x`'s spatial dimensions (those before the last): their
/// positions, and the last dimension `features` (`None`: kept, as pooling keeps it).
pub const fn window(
    x: Known,
    extents: &[i64],
    strides: &[i64],
    pad: WindowPad,
    features: Option<Dim>,
) -> Known {
    let n = extents.len();
    if check_window("", x, extents, pad).is_some() || !x.known || strides.len() != n {
        return Known::UNKNOWN;
    }
    let first = x.rank - n - 1;
    let mut out = x;
    let mut i = 0;
    while i < n {
        out.dims[first + i] = match (x.size(first + i), pad) {
            (Some(size), WindowPad::Same) if strides[i] > 0 => {
                Dim::Size((size + strides[i] - 1) / strides[i])
            }
            (Some(size), WindowPad::Valid) if strides[i] > 0 => {
                Dim::Size((size - extents[i]) / strides[i] + 1)
            }
            _ => Dim::Any,
        };
        i += 1;
    }
    if let Some(features) = features {
        out.dims[x.rank - 1] = match features {
            Dim::Size(f) => Dim::Size(f),
            _ => Dim::Any,
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Input;
    use super::*;

    const HEAD: &[Contract] = &[Contract {
        method: "call",
        text: "x: [B, T, 64] -> [B, T, 10]",
        inputs: &[Input { name: "x", position: 0, dims: &[Dim::Sym("B"), Dim::Sym("T"), Dim::Size(64)] }],
        output: Some(&[Dim::Sym("B"), Dim::Sym("T"), Dim::Size(10)]),
    }];

    fn k(dims: &[Dim]) -> Known {
        Known::of(dims)
    }

    #[test]
    fn a_childs_output_binds_its_symbols() {
        use Dim::{Any, Size};
        const OUT: Known = output(HEAD, "call", &[Known::of(&[Dim::Any, Dim::Size(16), Dim::Size(64)])]);
        assert_eq!(OUT, k(&[Any, Size(16), Size(10)]));
        assert_eq!(output(HEAD, "call", &[k(&[Any, Size(16), Size(63)])]), Known::UNKNOWN);
        assert_eq!(output(HEAD, "encode", &[k(&[Any])]), Known::UNKNOWN);
        let message =
            check_call(HEAD, "call", "Head::call", &["&x"], &[""], &[k(&[Any, Size(16), Size(63)])]);
        assert_eq!(
            message.as_ref().map(Message::as_str),
            Some("shape mismatch: this call passes `&x` of shape [_, 16, 63] to `Head::call`, which declares #[shape(x: [B, T, 64] -> [B, T, 10])]")
        );
    }

    #[test]
    fn only_two_sizes_that_differ_are_errors() {
        use Dim::{Any, Size};
        let (a, b) = (k(&[Any, Size(10)]), k(&[Size(4), Size(1)]));
        assert_eq!(broadcast(a, b), k(&[Size(4), Size(10)]));
        assert!(check_broadcast(a, k(&[Any])).is_none(), "_ may be 1 or 10");
        let wrong = check_broadcast(a, k(&[Size(12)])).map(|m| m.as_str().to_owned());
        assert_eq!(
            wrong.as_deref(),
            Some("shapes [_, 10] and [12] cannot be broadcast together: dimension -1 is 10 on one side and 12 on the other")
        );
        assert!(check_output("call", "x: [B] -> [B, 10]", &[Dim::Sym("B"), Size(10)], a).is_none());
        assert!(check_output("call", "x: [B] -> [B, 11]", &[Dim::Sym("B"), Size(11)], a).is_some());
        assert!(check_concatenate(&[a, k(&[Size(3), Size(5)])], -1).is_none());
        assert!(check_concatenate(&[a, k(&[Size(3), Size(5)])], 0).is_some());
        assert_eq!(concatenate(&[a, k(&[Size(3), Size(5)])], -1), k(&[Size(3), Size(15)]));
    }

    #[test]
    fn layout_rules() {
        use Dim::{Any, Size};
        let x = k(&[Any, Size(3), Size(4)]);
        assert_eq!(permute(x, &[0, 2, 1]), k(&[Any, Size(4), Size(3)]));
        assert_eq!(transpose(x, -1, -2), k(&[Any, Size(4), Size(3)]));
        assert_eq!(reduce(x, &[1], true), k(&[Any, Size(1), Size(4)]));
        assert_eq!(reduce(x, &[-1], false), k(&[Any, Size(3)]));
        assert_eq!(flatten(x, 1, -1), k(&[Any, Size(12)]));
        assert_eq!(flatten(x, 0, 1), k(&[Any, Size(4)]));
        assert_eq!(with_last(x, Size(7)), k(&[Any, Size(3), Size(7)]));
    }

    #[test]
    fn window_rules() {
        use Dim::{Any, Size};
        let x = k(&[Any, Size(16), Size(15), Size(32)]);
        assert_eq!(
            window(x, &[3, 3], &[1, 1], WindowPad::Same, Some(Size(64))),
            k(&[Any, Size(16), Size(15), Size(64)])
        );
        assert_eq!(window(x, &[2, 2], &[2, 2], WindowPad::Same, None), k(&[Any, Size(8), Size(8), Size(32)]));
        assert_eq!(
            window(x, &[3, 3], &[2, 2], WindowPad::Valid, Some(Any)),
            k(&[Any, Size(7), Size(7), Any])
        );
        assert_eq!(window(x, &[3, 3], &[1, 1], WindowPad::Unknown, None), k(&[Any, Any, Any, Size(32)]));
        assert!(check_window("nn::Conv", x, &[16, 3], WindowPad::Valid).is_none());
        let wide = check_window("nn::Conv", x, &[3, 16], WindowPad::Valid).map(|m| m.as_str().to_owned());
        assert_eq!(
            wide.as_deref(),
            Some("nn::Conv: the VALID window of extent 16 does not fit dimension 2 of size 15 of the input [_, 16, 15, 32] (Flax would return a zero-size output)")
        );
        assert!(check_window("nn::Conv", x, &[16, 16], WindowPad::Same).is_none());
        let flat = check_window("nn::Conv", k(&[Any, Size(64)]), &[3, 3], WindowPad::Same)
            .map(|m| m.as_str().to_owned());
        assert_eq!(
            flat.as_deref(),
            Some("nn::Conv with a 2-D window takes inputs of rank at least 3 (*batch, spatial dims, features); got [_, 64]")
        );
        assert_eq!(window(k(&[Any, Size(64)]), &[3, 3], &[1, 1], WindowPad::Same, None), Known::UNKNOWN);
    }
}
