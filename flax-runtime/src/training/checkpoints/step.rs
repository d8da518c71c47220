//! The step a checkpoint is saved at, and the file name Flax gives it.

use std::fmt;

/// A checkpoint's step: a training step, or any metric (Flax accepts an `int` or a `float`).
///
/// It is written into the file name as Python's `str` writes the number, because that is
/// the name Flax gives the file: `3` → `checkpoint_3`, `0.1` → `checkpoint_0.1`,
/// `1e5` (a float) → `checkpoint_100000.0`, `1e16` → `checkpoint_1e+16`, `1.5e-5` →
/// `checkpoint_1.5e-05`. An integer and a float of the same value name different files
/// (`checkpoint_3` and `checkpoint_3.0`), as in Flax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// An integer step (Python `int`; `i128` so that every Rust integer converts losslessly).
    Int(i128),
    /// A float step or metric (Python `float`).
    Float(f64),
}

macro_rules! int_steps {
    ($($int:ty),*) => {$(
        impl From<$int> for Step {
            fn from(step: $int) -> Self {
                Step::Int(i128::from(step))
            }
        }
    )*};
}
int_steps!(i8, i16, i32, i64, u8, u16, u32, u64);

impl From<usize> for Step {
    fn from(step: usize) -> Self {
        // usize is at most 64 bits wide on every platform Rust supports.
        Step::Int(step as i128)
    }
}

impl From<f64> for Step {
    fn from(step: f64) -> Self {
        Step::Float(step)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Int(n) => write!(f, "{n}"),
            Step::Float(x) => f.write_str(&python_float_repr(*x)),
        }
    }
}

/// Python's `repr(float)` (which `str` and f-strings use): the shortest digits that read back
/// as the same double, in fixed notation when the decimal exponent is in `-4..16` and with at
/// least one digit after the point (`1.0`), else in scientific notation with a signed exponent
/// of at least two digits (`1e-05`, `1.5e+16`).
pub(crate) fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` also prints the shortest round-tripping digits: `1.5e-5`, `0e0`.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if x.is_sign_negative() { "-" } else { "" };
    // Where the decimal point goes, counted from the start of `digits`.
    let point = exponent + 1;
    let body = if point <= -4 || point > 16 {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{fraction}e{exponent_sign}{:02}", exponent.unsigned_abs())
    } else if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize;
        if point < digits.len() {
            format!("{}.{}", &digits[..point], &digits[point..])
        } else {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected strings are Python 3.11's `repr` of the same doubles.
    #[test]
    fn floats_print_as_python_prints_them() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-1.0, "-1.0"),
            (1e5, "100000.0"),
            (2.5, "2.5"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (0.30000000000000004, "0.30000000000000004"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (x, expected) in cases {
            assert_eq!(python_float_repr(x), expected, "{x:e}");
        }
    }

    #[test]
    fn integers_print_in_decimal() {
        assert_eq!(Step::from(0).to_string(), "0");
        assert_eq!(Step::from(-7i64).to_string(), "-7");
        assert_eq!(Step::from(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(Step::from(3.0).to_string(), "3.0");
    }
}
