// A Sequential whose last layer gives 4 features, declared 5.
use flax::prelude::*;
use flax::sequential;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 64] -> [B, 5])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        sequential![nn::Dense::new(32), nn::relu, nn::Dense::new(4)].call(cx, x)
    }
}

fn main() {}
