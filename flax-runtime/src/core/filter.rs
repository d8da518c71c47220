//! Collection filters: which collections `mutable=` makes writable, and similar selections.
//!
//! Flax accepts `True`, `False`, a collection name, a list of names, or `DenyList(filter)`.
//! Here that is one enum with conversions from each of those spellings, so an invalid filter
//! (Flax's `InvalidFilterError`) cannot be written.

/// A set of collection names, described the way Flax's `mutable=` argument describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CollectionFilter {
    /// No collection (`mutable=False`).
    #[default]
    Nothing,
    /// Every collection (`mutable=True`).
    Everything,
    /// The listed collections (`mutable="batch_stats"` or `mutable=["batch_stats", "cache"]`).
    Only(Vec<String>),
    /// Every collection the inner filter does not select (`DenyList(...)`).
    Deny(Box<CollectionFilter>),
}

impl CollectionFilter {
    /// Every collection except those `filter` selects (Flax's `DenyList`).
    pub fn deny(filter: impl Into<CollectionFilter>) -> Self {
        CollectionFilter::Deny(Box::new(filter.into()))
    }

    /// Whether `collection` is selected.
    pub fn matches(&self, collection: &str) -> bool {
        match self {
            CollectionFilter::Nothing => false,
            CollectionFilter::Everything => true,
            CollectionFilter::Only(names) => names.iter().any(|n| n == collection),
            CollectionFilter::Deny(inner) => !inner.matches(collection),
        }
    }

    /// The collections either filter selects (Flax's `union_filters`).
    pub fn union(&self, other: &CollectionFilter) -> CollectionFilter {
        use CollectionFilter::{Deny, Everything, Nothing, Only};
        match (self.normalized(), other.normalized()) {
            (Everything, _) | (_, Everything) => Everything,
            (Nothing, f) | (f, Nothing) => f,
            (Only(a), Only(b)) => {
                Only(a.iter().chain(b.iter().filter(|n| !a.contains(n))).cloned().collect())
            }
            (Only(a), Deny(d)) | (Deny(d), Only(a)) => match *d {
                Only(denied) => {
                    CollectionFilter::deny(Only(denied.into_iter().filter(|n| !a.contains(n)).collect()))
                }
                _ => unreachable!("normalized filters deny only lists"),
            },
            (Deny(a), Deny(b)) => match (*a, *b) {
                (Only(a), Only(b)) => {
                    CollectionFilter::deny(Only(a.into_iter().filter(|n| b.contains(n)).collect()))
                }
                _ => unreachable!("normalized filters deny only lists"),
            },
        }
    }

    /// The same selection as `Nothing`, `Everything`, `Only(..)` or `Deny(Only(..))`.
    fn normalized(&self) -> CollectionFilter {
        use CollectionFilter::{Deny, Everything, Nothing, Only};
        match self {
            Deny(inner) => match inner.normalized() {
                Nothing => Everything,
                Everything => Nothing,
                Only(names) => CollectionFilter::deny(Only(names)),
                Deny(twice) => *twice,
            },
            other => other.clone(),
        }
    }

    /// Whether no collection can be selected (so `apply` has nothing to return besides output).
    pub fn is_empty(&self) -> bool {
        match self {
            CollectionFilter::Nothing => true,
            CollectionFilter::Only(names) => names.is_empty(),
            CollectionFilter::Everything | CollectionFilter::Deny(_) => false,
        }
    }
}

impl From<bool> for CollectionFilter {
    fn from(all: bool) -> Self {
        if all {
            CollectionFilter::Everything
        } else {
            CollectionFilter::Nothing
        }
    }
}

impl From<&str> for CollectionFilter {
    fn from(name: &str) -> Self {
        CollectionFilter::Only(vec![name.to_owned()])
    }
}

impl From<String> for CollectionFilter {
    fn from(name: String) -> Self {
        CollectionFilter::Only(vec![name])
    }
}

impl<const N: usize> From<[&str; N]> for CollectionFilter {
    fn from(names: [&str; N]) -> Self {
        CollectionFilter::Only(names.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl From<&[&str]> for CollectionFilter {
    fn from(names: &[&str]) -> Self {
        CollectionFilter::Only(names.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl From<Vec<String>> for CollectionFilter {
    fn from(names: Vec<String>) -> Self {
        CollectionFilter::Only(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_select_like_flax() {
        assert!(CollectionFilter::from(true).matches("params"));
        assert!(!CollectionFilter::from(false).matches("params"));
        assert!(CollectionFilter::from("batch_stats").matches("batch_stats"));
        assert!(!CollectionFilter::from("batch_stats").matches("params"));
        let both = CollectionFilter::from(["batch_stats", "cache"]);
        assert!(both.matches("cache") && !both.matches("params"));
        let deny = CollectionFilter::deny("intermediates");
        assert!(deny.matches("params") && !deny.matches("intermediates"));
        assert!(CollectionFilter::from(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn union_selects_what_either_selects() {
        let names = ["params", "batch_stats", "cache", "intermediates"];
        let filters = [
            CollectionFilter::Nothing,
            CollectionFilter::Everything,
            CollectionFilter::from("params"),
            CollectionFilter::from(["batch_stats", "cache"]),
            CollectionFilter::deny("intermediates"),
            CollectionFilter::deny(["params", "cache"]),
            CollectionFilter::deny(CollectionFilter::deny("cache")),
            CollectionFilter::deny(true),
        ];
        for a in &filters {
            for b in &filters {
                let union = a.union(b);
                for name in names {
                    assert_eq!(
                        union.matches(name),
                        a.matches(name) || b.matches(name),
                        "{a:?} | {b:?} on {name}"
                    );
                }
            }
        }
    }
}
