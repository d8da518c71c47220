// A declared dimension is an integer, a symbol, a field or `_`: not a string.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, "features"] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(10).call(cx, x)
    }
}

fn main() {}
