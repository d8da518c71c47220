// Concatenating a sequence [B, T, 16] with a per-example vector [B, 16].
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, T, 16], pooled: [B, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor, pooled: &Tensor) -> Result<Tensor> {
        Ok(Tensor::cat(&[x, pooled], -1))
    }
}

fn main() {}
