// #[shape] outside a #[module] impl block.
use flax::prelude::*;

pub struct Plain;

impl Plain {
    #[shape(x: [B, 4])]
    pub fn call(&self, x: &Tensor) -> Tensor {
        x.shallow_clone()
    }
}

fn main() {}
