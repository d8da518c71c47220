// Concatenating along axis 3 of rank-3 tensors.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, T, 16], y: [B, T, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(Tensor::cat(&[x, y], 3))
    }
}

fn main() {}
