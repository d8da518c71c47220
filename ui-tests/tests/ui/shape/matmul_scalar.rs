// A matmul of a scalar (a reduced tensor) and a matrix.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 16], w: [16, 4])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        Ok(x.sum(Kind::Float).matmul(w))
    }
}

fn main() {}
