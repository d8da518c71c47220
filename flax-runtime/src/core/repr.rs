//! Flax's `repr` of modules and attribute values, used by the generated `Debug` impls:
//!
//! ```text
//! Dense(
//!     # attributes
//!     features = 3
//!     use_bias = True
//! )
//! ```

use std::fmt::Write as _;

/// How an attribute value prints in a module's repr: as Python would print it (`True`,
/// `None`, `(3, 3)`, `'SAME'`, `float32`). Types without an impl print with `Debug`, or as
/// their type name when they have no `Debug` either.
pub trait FlaxRepr {
    /// The Python-style representation.
    fn flax_repr(&self) -> String;
}

impl FlaxRepr for bool {
    fn flax_repr(&self) -> String {
        if *self { "True" } else { "False" }.to_owned()
    }
}

macro_rules! display_repr {
    ($($t:ty),*) => {$(
        impl FlaxRepr for $t {
            fn flax_repr(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
display_repr!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl FlaxRepr for f32 {
    fn flax_repr(&self) -> String {
        format!("{self:?}")
    }
}

impl FlaxRepr for f64 {
    fn flax_repr(&self) -> String {
        format!("{self:?}")
    }
}

impl FlaxRepr for str {
    fn flax_repr(&self) -> String {
        format!("'{self}'")
    }
}

impl FlaxRepr for String {
    fn flax_repr(&self) -> String {
        self.as_str().flax_repr()
    }
}

impl<T: FlaxRepr + ?Sized> FlaxRepr for &T {
    fn flax_repr(&self) -> String {
        (**self).flax_repr()
    }
}

impl<T: FlaxRepr> FlaxRepr for Option<T> {
    fn flax_repr(&self) -> String {
        self.as_ref().map_or_else(|| "None".to_owned(), FlaxRepr::flax_repr)
    }
}

fn tuple_repr<'a>(items: impl ExactSizeIterator<Item = String> + 'a) -> String {
    let single = items.len() == 1;
    let body = items.collect::<Vec<_>>().join(", ");
    if single {
        format!("({body},)")
    } else {
        format!("({body})")
    }
}

impl<T: FlaxRepr> FlaxRepr for [T] {
    fn flax_repr(&self) -> String {
        tuple_repr(self.iter().map(FlaxRepr::flax_repr))
    }
}

impl<T: FlaxRepr> FlaxRepr for Vec<T> {
    fn flax_repr(&self) -> String {
        self.as_slice().flax_repr()
    }
}

impl<T: FlaxRepr, const N: usize> FlaxRepr for [T; N] {
    fn flax_repr(&self) -> String {
        self.as_slice().flax_repr()
    }
}

impl<A: FlaxRepr, B: FlaxRepr> FlaxRepr for (A, B) {
    fn flax_repr(&self) -> String {
        format!("({}, {})", self.0.flax_repr(), self.1.flax_repr())
    }
}

impl FlaxRepr for tch::Kind {
    fn flax_repr(&self) -> String {
        crate::core::frozen_dict::dtype_name(*self).to_owned()
    }
}

/// Writes `Name(\n    # attributes\n    a = 1\n)` as Flax's `_module_repr` does.
pub fn module_repr(type_name: &str, attributes: &[(&str, String)]) -> String {
    if attributes.is_empty() {
        return format!("{type_name}()");
    }
    let mut body = String::from("# attributes\n");
    for (name, value) in attributes {
        let _ = writeln!(body, "{name} = {value}");
    }
    let indented: String = body.lines().map(|line| format!("    {line}\n")).collect();
    format!("{type_name}(\n{indented})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_python_does() {
        assert_eq!(true.flax_repr(), "True");
        assert_eq!(None::<i64>.flax_repr(), "None");
        assert_eq!(vec![3i64, 3].flax_repr(), "(3, 3)");
        assert_eq!([2i64].flax_repr(), "(2,)");
        assert_eq!("SAME".flax_repr(), "'SAME'");
        assert_eq!(0.5f64.flax_repr(), "0.5");
        assert_eq!(tch::Kind::Float.flax_repr(), "float32");
    }

    #[test]
    fn nested_modules_indent_like_flax() {
        let inner = module_repr("Dense", &[("features", "4".into())]);
        let outer = module_repr("M", &[("a", "3".into()), ("sub", inner)]);
        assert_eq!(
            outer,
            "M(\n    # attributes\n    a = 3\n    sub = Dense(\n        # attributes\n        features = 4\n    )\n)"
        );
        assert_eq!(module_repr("Empty", &[]), "Empty()");
    }
}
