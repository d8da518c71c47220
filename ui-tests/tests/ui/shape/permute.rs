// A permute that names three axes of a rank-4 tensor.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 28, 28, 3])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let nchw = x.permute([0, 3, 1]);
        Ok(nchw.relu())
    }
}

fn main() {}
