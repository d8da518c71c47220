// A method has one #[shape] declaration; a second one (here a different batch layout) is an error.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 784] -> [B, 10])]
    #[shape(x: [784] -> [10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(10).call(cx, x)
    }
}

fn main() {}
