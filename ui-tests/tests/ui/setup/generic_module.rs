// #[setup] fields are not supported on a generic module (the macro reports it, not rustc).
use flax::prelude::*;

#[module]
pub struct Wrapper<M: Module + Clone + 'static> {
    inner: M,
    #[setup]
    dense: nn::Dense,
}

fn main() {}
