// Selecting channel 3 of an RGB image (channels 0 to 2).
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 28, 28, 3])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.select(3, 3))
    }
}

fn main() {}
