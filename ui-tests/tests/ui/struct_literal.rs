// A module is built with its constructor, as Flax's dataclass is called (`Mlp(10)`), not with
// a struct literal: the error names the constructor to use.
use flax::prelude::*;

#[module]
pub struct Mlp {
    pub hidden: i64,
}

fn main() {
    let _model = Mlp { hidden: 16 };
}
