// A reduction over an axis the input does not have.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 10, 16] -> [B, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.mean_dim(&[3i64][..], false, None))
    }
}

fn main() {}
