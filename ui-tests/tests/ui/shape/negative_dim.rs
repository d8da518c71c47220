// A declared dimension is a size: -1 (a reshape wildcard) is not one; `_` means any size.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, -1] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(10).call(cx, x)
    }
}

fn main() {}
