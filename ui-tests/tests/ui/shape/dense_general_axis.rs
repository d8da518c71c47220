// A DenseGeneral contracting axis 3 of a rank-3 input.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, T, 64])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::DenseGeneral::new(vec![32]).axis(vec![3]).call(cx, x)
    }
}

fn main() {}
