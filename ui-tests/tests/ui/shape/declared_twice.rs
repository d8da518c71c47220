// An argument declared twice in one #[shape].
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 784], x: [B, 28, 28] -> [B, 10])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        nn::Dense::new(10).call(cx, x)
    }
}

fn main() {}
