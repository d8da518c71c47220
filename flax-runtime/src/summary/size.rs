//! Parameter counts and their sizes in bytes, and how Flax prints them: `50 (200 B)`,
//! `824,458 (3.3 MB)` (Flax's `_size_and_bytes` and `_size_and_bytes_repr`).

use crate::core::frozen_dict::{FrozenDict, Value};
use std::iter::Sum;
use std::ops::Add;

/// The number of array elements in a variable tree and the bytes they take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Size {
    pub count: u64,
    pub bytes: u64,
}

impl Add for Size {
    type Output = Size;

    fn add(self, other: Size) -> Size {
        Size { count: self.count + other.count, bytes: self.bytes + other.bytes }
    }
}

impl Sum for Size {
    fn sum<I: Iterator<Item = Size>>(sizes: I) -> Size {
        sizes.fold(Size::default(), Add::add)
    }
}

impl Size {
    /// The elements and bytes of every array leaf of `value`; other leaves count nothing,
    /// as in Flax, where only leaves with a `size` count.
    pub fn of(value: &Value) -> Size {
        match value {
            Value::Tensor(t) => {
                let count = t.numel() as u64;
                Size { count, bytes: count * t.kind().elt_size_in_bytes() as u64 }
            }
            Value::Dict(d) => Size::of_dict(d),
            Value::List(items) => items.iter().map(Size::of).sum(),
            Value::Scalar(_) => Size::default(),
            Value::Boxed(b) => Size::of(b.unbox()),
        }
    }

    /// [`Size::of`] every value of `dict`.
    pub fn of_dict(dict: &FrozenDict) -> Size {
        dict.iter().map(|(_, v)| Size::of(v)).sum()
    }

    /// `count (bytes)` with thousands separators (`18,496 (74.0 KB)`); empty for nothing.
    pub fn repr(self) -> String {
        if self.count == 0 {
            return String::new();
        }
        format!("{} ({})", group_thousands(&self.count.to_string()), bytes_repr(self.bytes))
    }
}

/// Bytes in decimal units with one decimal above a thousand (`160 B`, `1.3 KB`, `3.2 MB`,
/// `1.0 GB`), as Flax's `_bytes_repr` prints them.
pub(crate) fn bytes_repr(bytes: u64) -> String {
    const UNITS: [(u64, f64, &str); 3] =
        [(1_000_000_000, 1e9, "GB"), (1_000_000, 1e6, "MB"), (1_000, 1e3, "KB")];
    for (above, scale, unit) in UNITS {
        if bytes > above {
            let scaled = format!("{:.1}", bytes as f64 / scale);
            let (whole, fraction) = scaled.split_once('.').unwrap_or((&scaled, "0"));
            return format!("{}.{fraction} {unit}", group_thousands(whole));
        }
    }
    format!("{} B", group_thousands(&bytes.to_string()))
}

/// A string of digits with a comma every three from the right (Python's `{:,}`).
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes<TAB>repr` lines written by `scripts/golden/tabulate_vectors.py` with Flax's
    /// `_bytes_repr`.
    const BYTES_REPR: &str = include_str!("../../tests/data/tabulate/bytes_repr.tsv");

    #[test]
    fn bytes_print_as_flax_prints_them() {
        let mut checked = 0;
        for line in BYTES_REPR.lines() {
            let (bytes, expected) = line.split_once('\t').expect("bytes<TAB>repr");
            assert_eq!(bytes_repr(bytes.parse().expect("a byte count")), expected, "for {bytes} bytes");
            checked += 1;
        }
        assert!(checked > 10, "the golden file lists the unit boundaries");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(Size { count: 824_458, bytes: 3_297_832 }.repr(), "824,458 (3.3 MB)");
        assert_eq!(Size { count: 50, bytes: 200 }.repr(), "50 (200 B)");
        assert_eq!(Size::default().repr(), "");
    }
}
