// A transpose of axis 3 of a rank-3 tensor.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, T, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.transpose(1, 3))
    }
}

fn main() {}
