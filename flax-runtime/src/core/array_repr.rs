//! JAX's `repr` of an array, `Array([0.01, 0.01], dtype=float32)`, which Flax's `pretty_repr`
//! prints for every leaf: numpy's `array2string` with its default print options (line width
//! 75, precision 8 in `maxprec` mode, summarisation above 1000 elements with 3 edge items).

use crate::core::frozen_dict::{dtype_name, shape_repr};
use crate::core::uint_array::UintArray;
use tch::{Kind, Tensor};

const LINE_WIDTH: usize = 75;
const PRECISION: usize = 8;
const THRESHOLD: i64 = 1000;
const EDGE_ITEMS: i64 = 3;
const PREFIX: &str = "Array(";

/// `Array([...], dtype=float32)` as JAX prints it.
pub fn array_repr(tensor: &Tensor) -> String {
    let kind = tensor.kind();
    repr(dtype_name(kind), &tensor.size(), |indices| {
        let values = shown_values(tensor, indices);
        let format = Formatter::new(kind, &values);
        values.iter().map(|v| format.format(*v)).collect()
    })
}

/// `Array([ 0, 42], dtype=uint32)`: the same repr for a host-side unsigned array, whose
/// elements numpy right-aligns to the widest one, as for every integer dtype.
pub fn uint_array_repr(array: &UintArray) -> String {
    repr(array.dtype().name(), array.shape(), |indices| {
        let values = array.values();
        let digits: Vec<String> = indices.iter().map(|&i| values[i as usize].to_string()).collect();
        let width = digits.iter().map(String::len).max().unwrap_or(1);
        digits.iter().map(|d| format!("{d:>width$}")).collect()
    })
}

/// The repr of an array of `dtype` and `shape` whose shown elements (see [`Shown`]) are
/// formatted by `words`, given their row-major flat indices.
fn repr(dtype: &str, shape: &[i64], words: impl FnOnce(&[i64]) -> Vec<String>) -> String {
    let dtype_str = format!("dtype={dtype}");
    if shape.contains(&0) {
        return format!("{PREFIX}[], shape={}, {dtype_str})", shape_repr(shape));
    }
    let shown = shown(shape);
    let words = words(&shown.indices);
    let body = if shown.shape.is_empty() {
        words.into_iter().next().unwrap_or_default()
    } else {
        let hanging = " ".repeat(1 + PREFIX.len());
        let mut cursor = 0;
        format_array(&words, &mut cursor, &shown.shape, shape, shown.summarised, &hanging, LINE_WIDTH - 1)
    };
    let last_line = body.len() - body.rfind('\n').map_or(0, |i| i + 1) + PREFIX.len() + 1;
    let sep =
        if last_line + dtype_str.len() + 2 > LINE_WIDTH { " ".repeat(PREFIX.len()) } else { " ".into() };
    format!("{PREFIX}{body},{sep}{dtype_str})")
}

/// The elements numpy shows (all, or the edge items of every axis when summarising) as their
/// row-major flat indices, with the shape of what is shown and whether it is summarised.
struct Shown {
    indices: Vec<i64>,
    shape: Vec<i64>,
    summarised: bool,
}

fn shown(shape: &[i64]) -> Shown {
    let summarised = shape.iter().product::<i64>() > THRESHOLD;
    let mut indices = vec![0];
    let mut shown_shape = Vec::with_capacity(shape.len());
    for (axis, &n) in shape.iter().enumerate() {
        let kept: Vec<i64> = if summarised && n > 2 * EDGE_ITEMS {
            (0..EDGE_ITEMS).chain(n - EDGE_ITEMS..n).collect()
        } else {
            (0..n).collect()
        };
        let stride: i64 = shape[axis + 1..].iter().product();
        indices = indices.iter().flat_map(|&base| kept.iter().map(move |&i| base + i * stride)).collect();
        shown_shape.push(kept.len() as i64);
    }
    Shown { indices, shape: shown_shape, summarised }
}

/// The elements of `tensor` at the flat `indices`, as f64.
fn shown_values(tensor: &Tensor, indices: &[i64]) -> Vec<f64> {
    // Widened first: libtorch selects from every kind it can convert, float8 included.
    let flat = tensor.to_device(tch::Device::Cpu).to_kind(Kind::Double).flatten(0, -1);
    let shown = flat.index_select(0, &Tensor::from_slice(indices));
    Vec::<f64>::try_from(&shown).unwrap_or_default()
}

/// numpy's `_formatArray`: nested brackets, rows wrapped at the line width, blank lines between
/// blocks of higher dimensions, `...` where summarised.
fn format_array(
    words: &[String],
    cursor: &mut usize,
    shape: &[i64],
    full: &[i64],
    summarised: bool,
    hanging: &str,
    width: usize,
) -> String {
    let next_hanging = format!("{hanging} ");
    let next_width = width - 1;
    let n = shape[0] as usize;
    let summary = summarised && full[0] > 2 * EDGE_ITEMS;
    let leading = if summary { EDGE_ITEMS as usize } else { n };
    let mut s = String::new();
    if shape.len() == 1 {
        let elem_width = width - 1;
        let mut line = hanging.to_owned();
        for i in 0..n {
            if summary && i == leading {
                extend_line(&mut s, &mut line, "...", elem_width, hanging);
                line.push_str(", ");
            }
            let word = &words[*cursor];
            *cursor += 1;
            let w = if i + 1 == n { width } else { elem_width };
            extend_line(&mut s, &mut line, word, w, hanging);
            if i + 1 < n {
                line.push_str(", ");
            }
        }
        s.push_str(&line);
    } else {
        let line_sep = format!(",{}", "\n".repeat(shape.len() - 1));
        for i in 0..n {
            if summary && i == leading {
                s.push_str(hanging);
                s.push_str("...");
                s.push_str(&line_sep);
            }
            let nested =
                format_array(words, cursor, &shape[1..], &full[1..], summarised, &next_hanging, next_width);
            s.push_str(hanging);
            s.push_str(&nested);
            if i + 1 < n {
                s.push_str(&line_sep);
            }
        }
    }
    format!("[{}]", &s[hanging.len()..])
}

/// numpy's `_extendLine`: wrap before `word` when it would pass `width`.
fn extend_line(s: &mut String, line: &mut String, word: &str, width: usize, hanging: &str) {
    if line.len() + word.len() > width && line.len() > hanging.len() {
        s.push_str(line.trim_end());
        s.push('\n');
        *line = hanging.to_owned();
    }
    line.push_str(word);
}

/// numpy's per-dtype element formatters, fitted to the shown values.
enum Formatter {
    Bool,
    /// ml_dtypes' types (bfloat16) print each element as Python's `%g`, unaligned.
    General,
    Int {
        width: usize,
    },
    Float(FloatFormat),
}

struct FloatFormat {
    kind: Kind,
    exp: bool,
    precision: usize,
    pad_left: usize,
    pad_right: usize,
    exp_size: usize,
}

impl Formatter {
    fn new(kind: Kind, values: &[f64]) -> Self {
        match kind {
            Kind::Bool => Formatter::Bool,
            Kind::BFloat16 => Formatter::General,
            Kind::Half | Kind::Float | Kind::Double => Formatter::Float(FloatFormat::new(kind, values)),
            _ => Formatter::Int {
                width: values.iter().map(|v| format!("{}", *v as i64).len()).max().unwrap_or(1),
            },
        }
    }

    fn format(&self, v: f64) -> String {
        match self {
            Formatter::Bool => if v != 0.0 { " True" } else { "False" }.to_owned(),
            Formatter::General => general(v),
            Formatter::Int { width } => format!("{:>width$}", v as i64),
            Formatter::Float(f) => f.format(v),
        }
    }
}

/// The shortest decimal digits that read back to `v` in `kind`'s precision, as
/// `(mantissa digits, decimal exponent)`: `0.0299` is `("299", -2)`.
fn shortest_digits(v: f64, kind: Kind) -> (String, i32) {
    let s = match kind {
        Kind::Double => format!("{v:e}"),
        Kind::Float => format!("{:e}", v as f32),
        _ => (0..17)
            .map(|p| format!("{v:.p$e}"))
            .find(|s| s.parse::<f64>().is_ok_and(|x| round_to(x, kind) == v))
            .unwrap_or_else(|| format!("{v:e}")),
    };
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    (if digits.is_empty() { "0".into() } else { digits.to_owned() }, exponent.parse().unwrap_or(0))
}

/// C's `%g`: 6 significant digits, trailing zeros dropped, scientific below 1e-4 or from 1e6.
fn general(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v < 0.0 {
            "-inf".into()
        } else {
            "inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let exp = format!("{:.5e}", v).split_once('e').and_then(|(_, e)| e.parse::<i32>().ok()).unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let s = format!("{:.5e}", v);
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') { m.trim_end_matches('0').trim_end_matches('.') } else { m };
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.unsigned_abs());
    }
    let s = format!("{:.*}", (5 - exp).max(0) as usize, v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn round_to(x: f64, kind: Kind) -> f64 {
    match kind {
        Kind::Half => half::f16::from_f64(x).to_f64(),
        Kind::BFloat16 => half::bf16::from_f64(x).to_f64(),
        _ => x,
    }
}

/// `(integer part, fraction digits)` of `|v|` in positional notation, at most `PRECISION`
/// fraction digits (rounded), trailing zeros trimmed.
fn positional(v: f64, kind: Kind) -> (String, String) {
    let (digits, exp) = shortest_digits(v.abs(), kind);
    let frac_len = (digits.len() as i32 - 1 - exp).max(0) as usize;
    let text = if frac_len > PRECISION {
        format!("{:.*}", PRECISION, v.abs())
    } else {
        format!("{:.*}", frac_len, shortest_value(&digits, exp))
    };
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let sign = if v.is_sign_negative() { "-" } else { "" };
    (format!("{sign}{int}"), frac.trim_end_matches('0').to_owned())
}

fn shortest_value(digits: &str, exp: i32) -> f64 {
    format!("{}.{}e{}", &digits[..1], &digits[1..], exp).parse().unwrap_or(0.0)
}

/// `(integer digit, fraction digits, exponent)` in scientific notation, at most `PRECISION`
/// fraction digits.
fn scientific(v: f64, kind: Kind) -> (String, String, i32) {
    let (digits, exp) = shortest_digits(v.abs(), kind);
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if digits.len() - 1 > PRECISION {
        let s = format!("{:.*e}", PRECISION, v.abs());
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (i, f) = m.split_once('.').unwrap_or((m, ""));
        return (format!("{sign}{i}"), f.trim_end_matches('0').to_owned(), e.parse().unwrap_or(0));
    }
    (format!("{sign}{}", &digits[..1]), digits[1..].to_owned(), exp)
}

impl FloatFormat {
    fn new(kind: Kind, values: &[f64]) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let non_zero: Vec<f64> = finite.iter().map(|v| v.abs()).filter(|v| *v != 0.0).collect();
        let exp = match (non_zero.iter().copied().reduce(f64::max), non_zero.iter().copied().reduce(f64::min))
        {
            (Some(max), Some(min)) => max >= 1e8 || min < 1e-4 || max / min > 1e3,
            _ => false,
        };
        let mut f = FloatFormat { kind, exp, precision: 0, pad_left: 0, pad_right: 0, exp_size: 0 };
        if exp {
            let parts: Vec<_> = finite.iter().map(|v| scientific(*v, kind)).collect();
            f.precision = parts.iter().map(|p| p.1.len()).max().unwrap_or(0);
            f.exp_size = parts.iter().map(|p| p.2.unsigned_abs().to_string().len().max(2)).max().unwrap_or(2);
            f.pad_left = parts.iter().map(|p| p.0.len()).max().unwrap_or(1);
            f.pad_right = f.exp_size + 2 + f.precision;
        } else {
            let parts: Vec<_> = finite.iter().map(|v| positional(*v, kind)).collect();
            f.pad_left = parts.iter().map(|p| p.0.len()).max().unwrap_or(1);
            f.pad_right = parts.iter().map(|p| p.1.len()).max().unwrap_or(0);
        }
        if finite.len() != values.len() {
            let neg_inf = values.iter().any(|v| v.is_infinite() && *v < 0.0);
            let offset = f.pad_right + 1;
            f.pad_left = f
                .pad_left
                .max(3usize.saturating_sub(offset))
                .max((3 + usize::from(neg_inf)).saturating_sub(offset));
        }
        f
    }

    fn format(&self, v: f64) -> String {
        if !v.is_finite() {
            let text = if v.is_nan() {
                "nan"
            } else if v < 0.0 {
                "-inf"
            } else {
                "inf"
            };
            return format!("{text:>width$}", width = self.pad_left + self.pad_right + 1);
        }
        if self.exp {
            // numpy pads to the common precision with further exact digits, not zeros.
            let s = format!("{:.*e}", self.precision, v.abs());
            let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
            let int = format!("{}{int}", if v.is_sign_negative() { "-" } else { "" });
            let sign = if exp < 0 { '-' } else { '+' };
            format!(
                "{int:>pl$}.{frac}e{sign}{e:0>es$}",
                pl = self.pad_left,
                e = exp.unsigned_abs(),
                es = self.exp_size
            )
        } else {
            let (int, frac) = positional(v, self.kind);
            format!("{int:>pl$}.{frac:<pr$}", pl = self.pad_left, pr = self.pad_right)
        }
    }
}
