// Indexing a rank-2 tensor with three indices.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 16])]
    pub fn call(&self, _cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        use flax::tch::IndexOp;
        Ok(x.i((.., 0, 0)))
    }
}

fn main() {}
