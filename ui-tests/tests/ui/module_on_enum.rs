// #[module] makes a struct a module, or the methods of its impl block module methods: not an enum.
use flax::prelude::*;

#[module]
pub enum Activation {
    Relu,
    Gelu,
}

fn main() {}
