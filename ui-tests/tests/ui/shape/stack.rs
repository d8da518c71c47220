// Stacking tensors of different shapes.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 4], y: [B, 5])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(Tensor::stack(&[x, y], 1))
    }
}

fn main() {}
