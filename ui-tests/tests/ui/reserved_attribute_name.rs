// Flax: ReservedModuleAttributeError, for `name` and for `parent`.
use flax::prelude::*;

#[module]
pub struct Named {
    pub name: String,
    pub parent: i64,
}

fn main() {}
