//! The shape algebra of the checker: a dimension is a product `coef × atoms` of a known
//! integer and opaque positive sizes (a declared symbol `B`, a field `self.features`), or
//! unknown; a shape is a list of them, or unknown altogether.
//!
//! Relations are concluded only when they hold for every value of the atoms (each at least
//! 1): `2*B` and `3*B` differ, `B` and `10` may be equal. That is what keeps the checker from
//! false errors.

use std::fmt;

/// One dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// `coef × atoms…`, the atoms sorted (a literal has none).
    Term { coef: i64, atoms: Vec<String> },
    /// Nothing is known.
    Unknown,
}

/// A shape: its dimensions, or `None` when not even the rank is known.
pub type Shape = Option<Vec<Dim>>;

impl Dim {
    pub fn lit(n: i64) -> Dim {
        Dim::Term { coef: n, atoms: Vec::new() }
    }

    pub fn atom(name: impl Into<String>) -> Dim {
        Dim::Term { coef: 1, atoms: vec![name.into()] }
    }

    /// The value when it is a literal.
    pub fn as_lit(&self) -> Option<i64> {
        match self {
            Dim::Term { coef, atoms } if atoms.is_empty() => Some(*coef),
            _ => None,
        }
    }

    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Term { coef: a, atoms: x }, Dim::Term { coef: b, atoms: y }) => {
                let Some(coef) = a.checked_mul(*b) else { return Dim::Unknown };
                let mut atoms: Vec<String> = x.iter().chain(y).cloned().collect();
                atoms.sort();
                Dim::Term { coef, atoms }
            }
            _ => Dim::Unknown,
        }
    }

    /// `self + other` where the sum is again a term (same atoms).
    pub fn add(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Term { coef: a, atoms: x }, Dim::Term { coef: b, atoms: y }) if x == y => {
                a.checked_add(*b).map_or(Dim::Unknown, |coef| Dim::Term { coef, atoms: x.clone() })
            }
            _ => Dim::Unknown,
        }
    }

    /// `self / other` when it is exact for every value of the atoms.
    pub fn div(&self, other: &Dim) -> Option<Dim> {
        let (Dim::Term { coef: a, atoms: x }, Dim::Term { coef: b, atoms: y }) = (self, other) else {
            return None;
        };
        let mut rest = x.clone();
        for atom in y {
            let i = rest.iter().position(|r| r == atom)?;
            rest.remove(i);
        }
        (*b != 0 && a % b == 0).then(|| Dim::Term { coef: a / b, atoms: rest })
    }

    /// Whether the two differ for every value of the atoms.
    pub fn differs(&self, other: &Dim) -> bool {
        let (Dim::Term { coef: a, atoms: x }, Dim::Term { coef: b, atoms: y }) = (self, other) else {
            return false;
        };
        if x == y {
            return a != b;
        }
        // A literal against `c × atoms`: equal only if `c` divides it with a positive quotient.
        match (x.is_empty(), y.is_empty()) {
            (true, false) => *b != 0 && (a % b != 0 || a / b < 1),
            (false, true) => *a != 0 && (b % a != 0 || b / a < 1),
            _ => false,
        }
    }

    /// Whether it is not 1 for any value of the atoms.
    pub fn never_one(&self) -> bool {
        match self {
            Dim::Term { coef, atoms } if atoms.is_empty() => *coef != 1,
            Dim::Term { coef, .. } => *coef != 1,
            Dim::Unknown => false,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Unknown => f.write_str("_"),
            Dim::Term { coef, atoms } if atoms.is_empty() => write!(f, "{coef}"),
            Dim::Term { coef, atoms } => {
                if *coef != 1 {
                    write!(f, "{coef}*")?;
                }
                f.write_str(&atoms.join("*"))
            }
        }
    }
}

/// `[B, 28, 28, 1]`, or `[?]` for an unknown shape.
pub fn show(shape: &Shape) -> String {
    match shape {
        None => "[?]".to_owned(),
        Some(dims) => format!("[{}]", dims.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The number of elements, when every dimension is a term.
pub fn count(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::lit(1), |acc, d| acc.mul(d))
}

/// The dimension at `axis` (negative counts from the end) of a rank-`rank` shape.
pub fn axis_index(axis: i64, rank: usize) -> Option<usize> {
    let rank = rank as i64;
    let i = if axis < 0 { axis + rank } else { axis };
    (0..rank).contains(&i).then_some(i as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_provable_differences() {
        let b = Dim::atom("B");
        assert!(!b.differs(&Dim::lit(10)), "B may be 10");
        assert!(b.mul(&Dim::lit(2)).differs(&b.mul(&Dim::lit(3))));
        assert!(Dim::lit(3).differs(&b.mul(&Dim::lit(2))), "2*B is even");
        assert!(!Dim::lit(4).differs(&b.mul(&Dim::lit(2))));
        assert!(!b.differs(&Dim::atom("self.features")));
        assert!(!b.never_one());
        assert_eq!(b.mul(&Dim::lit(784)).div(&Dim::lit(784)), Some(b.clone()));
        assert_eq!(b.mul(&Dim::lit(784)).to_string(), "784*B");
    }
}
