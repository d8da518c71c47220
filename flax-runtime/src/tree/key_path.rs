//! Key paths: where a leaf sits in a tree, as JAX's `tree_flatten_with_path` reports it.
//!
//! A [`KeyPath`] is a stack of borrowed keys that traversals push and pop as they descend, so
//! walking a tree costs no string building; a caller that wants Flax's string keys
//! (`["params", "Dense_0", "kernel"]`) asks for them with [`KeyPath::to_strings`].

use std::fmt;

/// One step of a [`KeyPath`]: a dictionary key or struct field, or a sequence index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    /// A dictionary key or a struct field's (serialized) name.
    Name(&'a str),
    /// A position in a list or tuple (serialized as `"0"`, `"1"`, … like Flax's state dicts).
    Index(usize),
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Name(name) => f.write_str(name),
            Key::Index(i) => write!(f, "{i}"),
        }
    }
}

/// The keys from the root of a tree down to the node being visited.
///
/// Displayed `/`-joined (`params/Dense_0/kernel`), the root as `.` (Flax's root name in
/// serialization errors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath<'a> {
    keys: Vec<Key<'a>>,
}

impl<'a> KeyPath<'a> {
    /// The root path (no keys); allocates nothing until the first key is pushed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys, root first.
    pub fn keys(&self) -> &[Key<'a>] {
        &self.keys
    }

    /// The number of keys (0 at the root).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether this is the root.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Runs `body` with `key` pushed, popping it afterwards, so a traversal can never leave a
    /// stale key behind (what `Tree` implementations use to descend into a child).
    pub fn scoped<R>(&mut self, key: Key<'a>, body: impl FnOnce(&mut Self) -> R) -> R {
        self.keys.push(key);
        let result = body(self);
        self.keys.pop();
        result
    }

    /// The keys as Flax's string key path, e.g. `["params", "Dense_0", "kernel"]`.
    pub fn to_strings(&self) -> Vec<String> {
        self.keys.iter().map(Key::to_string).collect()
    }

    /// The `/`-joined path with one more key appended, for naming a child that is not
    /// visited (an unexpected state-dict entry).
    pub fn child_string(&self, key: &str) -> String {
        if self.is_empty() {
            key.to_owned()
        } else {
            format!("{self}/{key}")
        }
    }
}

impl fmt::Display for KeyPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((first, rest)) = self.keys.split_first() else {
            return f.write_str(".");
        };
        write!(f, "{first}")?;
        rest.iter().try_for_each(|key| write!(f, "/{key}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_pushes_and_pops() {
        let mut path = KeyPath::new();
        assert_eq!(path.to_string(), ".");
        let inner = path.scoped(Key::Name("params"), |p| {
            p.scoped(Key::Index(3), |p| (p.to_strings(), p.to_string(), p.child_string("bias")))
        });
        assert_eq!(inner.0, ["params", "3"]);
        assert_eq!(inner.1, "params/3");
        assert_eq!(inner.2, "params/3/bias");
        assert!(path.is_empty());
        assert_eq!(path.child_string("step"), "step");
    }
}
