// A permute that names axis 1 twice (NHWC to NCHW mistyped).
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 28, 28, 3])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        Ok(x.permute([0, 3, 1, 1]))
    }
}

fn main() {}
