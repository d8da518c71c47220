// A Dense applied to a scalar (the sum of the whole batch) instead of a feature vector.
use flax::prelude::*;

#[module]
pub struct Model;

#[module]
impl Model {
    #[compact]
    #[shape(x: [B, 16])]
    pub fn call(&self, cx: &mut Scope, x: &Tensor) -> Result<Tensor> {
        let total = x.sum(Kind::Float);
        nn::Dense::new(1).call(cx, &total)
    }
}

fn main() {}
