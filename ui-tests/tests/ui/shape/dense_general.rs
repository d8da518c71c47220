// A residual add after a DenseGeneral whose merged features are 32, not 64.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, T, 64] -> [B, T, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let heads = nn::DenseGeneral::new(vec![4, 16]).call(cx, x)?;
        let y = nn::DenseGeneral::new(32).axis(vec![-2, -1]).call(cx, &heads)?;
        Ok(x + y)
    }
}

fn main() {}
