// Stacking along axis 3: the result of stacking [B, 4] tensors has rank 3.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 4], y: [B, 4])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(Tensor::stack(&[x, y], 3))
    }
}

fn main() {}
