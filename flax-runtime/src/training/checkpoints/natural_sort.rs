//! Flax's `natural_sort`: checkpoint names ordered by the numbers in them.

use regex::Regex;
use std::cmp::Ordering;
use std::sync::LazyLock;

/// Flax's `SIGNED_FLOAT_RE`: an optionally signed decimal number with an optional exponent
/// (`3`, `-0.5`, `.5`, `1.`, `1e5`, `+2E-3`). Digits are ASCII digits here; Python's `\d` also
/// matches other Unicode decimal digits, which no checkpoint name written by Flax contains.
static SIGNED_FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
        .expect("the pattern is a valid regex")
});

/// One piece of a name: the text between numbers, or a number.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Number(f64),
}

/// The name split as Python's `re.split` with a capturing group splits it: text, number,
/// text, …, text (possibly empty texts), so two keys always hold the same kind of piece at
/// the same position.
fn pieces(name: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut end = 0;
    for number in SIGNED_FLOAT.find_iter(name) {
        pieces.push(Piece::Text(&name[end..number.start()]));
        // Every match is a valid float literal for Rust too ("1.", ".5", "+1e5", "1e999" = inf).
        pieces.push(Piece::Number(number.as_str().parse().unwrap_or(f64::NAN)));
        end = number.end();
    }
    pieces.push(Piece::Text(&name[end..]));
    pieces
}

fn compare_pieces(a: &Piece, b: &Piece) -> Ordering {
    match (a, b) {
        // Python compares str by code point, which is UTF-8 byte order.
        (Piece::Text(a), Piece::Text(b)) => a.cmp(b),
        (Piece::Number(a), Piece::Number(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        (Piece::Text(_), Piece::Number(_)) => Ordering::Less,
        (Piece::Number(_), Piece::Text(_)) => Ordering::Greater,
    }
}

/// Compares two names as Flax's natural sort does: piece by piece, numbers by value, and a
/// name that is a prefix of the other first.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (pieces(a), pieces(b));
    a.iter()
        .zip(&b)
        .map(|(a, b)| compare_pieces(a, b))
        .find(|ordering| ordering.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// Flax's `natural_sort(file_list)`: names sorted by their text and by the value of the
/// numbers in them, so that `checkpoint_10` comes after `checkpoint_9` and
/// `ckpt_0.001, ckpt_0.01, ckpt_0.1` are in order; signs and exponents count
/// (`ckpt_-1.0 < ckpt_1.0 < ckpt_1e5`). The sort is stable, as Python's.
pub fn natural_sort<S: AsRef<str>>(mut names: Vec<S>) -> Vec<S> {
    names.sort_by(|a, b| natural_cmp(a.as_ref(), b.as_ref()));
    names
}

/// The value of the last number in `name` (Flax's `_checkpoint_path_step`), if any.
pub(crate) fn last_number(name: &str) -> Option<f64> {
    SIGNED_FLOAT.find_iter(name).last().and_then(|number| number.as_str().parse().ok())
}

/// Whether `text` is one whole number as a checkpoint step is written: what Flax's number
/// pattern matches from end to end (`3`, `-7`, `0.5`, `1e+16`, `1E2`, `.5`), or Python's
/// `inf`, `-inf`, `nan` for the float steps that print so.
pub(crate) fn is_number(text: &str) -> bool {
    let whole = SIGNED_FLOAT.find(text).is_some_and(|m| m.start() == 0 && m.end() == text.len());
    whole || matches!(text, "inf" | "-inf" | "nan")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_only() {
        for number in ["3", "-7", "+2", "0.5", ".5", "3.", "1e+16", "1.5e-05", "1E2", "inf", "-inf", "nan"] {
            assert!(is_number(number), "{number}");
        }
        for other in ["", "tmp", "1.bak", "1e", "2e", "x9", "1_gda", "1 ", "1.orbax-checkpoint-tmp-9", "--1"]
        {
            assert!(!is_number(other), "{other}");
        }
    }

    #[test]
    fn splits_like_python_re_split() {
        use Piece::{Number as N, Text as T};
        assert_eq!(pieces("checkpoint_1e5"), [T("checkpoint_"), N(1e5), T("")]);
        assert_eq!(pieces("a-1.5b.5c"), [T("a"), N(-1.5), T("b"), N(0.5), T("c")]);
        assert_eq!(pieces("x1.e"), [T("x"), N(1.0), T("e")]);
        assert_eq!(pieces("1e+2e"), [T(""), N(100.0), T("e")]);
        assert_eq!(pieces("tmp"), [T("tmp")]);
        assert_eq!(pieces("+-"), [T("+-")]);
    }

    // The docstring examples of Flax's natural_sort and restore_checkpoint.
    #[test]
    fn flax_docstring_examples() {
        assert_eq!(natural_sort(vec!["file_1", "file_10", "file_2"]), ["file_1", "file_2", "file_10"]);
        assert_eq!(
            natural_sort(vec!["file_0.1", "file_-0.2", "file_2.0"]),
            ["file_-0.2", "file_0.1", "file_2.0"]
        );
    }

    #[test]
    fn a_prefix_sorts_first_and_the_sort_is_stable() {
        assert_eq!(natural_sort(vec!["ckpt_tmp", "ckpt_3", "ckpt_"]), ["ckpt_", "ckpt_3", "ckpt_tmp"]);
        assert_eq!(natural_sort(vec!["c_1.0", "c_1", "c_01"]), ["c_1.0", "c_1", "c_01"]);
    }

    #[test]
    fn last_numbers() {
        assert_eq!(last_number("checkpoint_-1.0"), Some(-1.0));
        assert_eq!(last_number("run2_checkpoint_1e5"), Some(1e5));
        assert_eq!(last_number("checkpoint_tmp"), None);
    }
}
